"""Exact BSDS edge matching: ``correspondPixels`` as a minimum-cost assignment, solved exactly.

``correspondPixels(E, GT, maxDist)`` pairs the predicted with the ground-truth pixels of two binary
maps one to one. Its C++ core (``match.cc``) sets up an assignment problem: a pair of pixels at
most ``r = maxDist * sqrt(H² + W²)`` pixels apart (``u² + v² <= r²``) costs its Euclidean
distance; every pixel can instead take an outlier node at ``outlierCost * r`` (``outlierCost =
100``); outlier nodes of the two maps pair up with each other at that same cost. A pixel is
matched when it is paired with a pixel of the other map.

``match.cc`` hands this problem to Goldberg's CSA on a *random sparse* outlier graph (six outlier
edges per node, from a clock-seeded generator), so its matching is feasible but not always the
minimum, and runs differ: on 8 images of ``benchmarks/bench_ods.py`` × 99 thresholds, the
compiled match.cc of the ``pyedgeeval`` package matched up to 8 pixels fewer than the minimum at
a threshold (0.03 % of all matches; ODS 0.72801 against 0.72826). Here the dense version of the
same problem is solved exactly:

* Left nodes are the predicted pixels and one outlier per ground-truth pixel; right nodes the
  ground-truth pixels and one outlier per predicted pixel. Edges: pairs within ``r`` (their
  distance), each pixel to its own outlier (``oc = outlier_cost * r``), and outlier to outlier on
  the transpose of every pair within ``r`` (``oc`` as well, match.cc's weight for these edges).
  Every matching of pixels extends to a perfect matching of this graph (an unmatched pixel takes
  its own outlier, the outliers of a matched pair take each other), at cost
  ``sum(d) + oc * (n_pred + n_gt - m)``; so the perfect matching of least weight is the matching
  of pixels that minimises ``sum(d) - oc * m``, which is what match.cc's dense graph minimises.
  The outlier-outlier edges of a *free* outlier pair cost 0 in some write-ups; that objective
  is ``sum(d) - 2 oc * m`` (twice the saving per match), not match.cc's.
* ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp) solves it. SciPy drops
  explicit zeros (co-located pixels are 0 apart), so every weight is raised by 1: a perfect
  matching has exactly ``n_pred + n_gt`` edges, which shifts every candidate by the same amount.
  Each row's own outlier is stored first, so the Hopcroft–Karp feasibility check SciPy runs
  first finds a perfect matching in its first greedy pass (its depth-first search can take
  exponential time on layered graphs, scipy/scipy#26147).
* Connected components of the pairs-within-``r`` graph are independent problems. A component
  with a single predicted or a single ground-truth pixel matches exactly one pair (a pair saves
  ``oc - d > 0``) and skips the solver.

Weights are integers: distances in units of 2^-20 pixel, rounded (match.cc rounds to 1/100
pixel; the unit grows where n times the outlier cost would pass float64's 2^53). LAPJVsp
compares reduced costs for equality and can loop forever on float rounding (it did on a 256×256
benchmark image); integer-valued doubles keep its arithmetic exact. Equal
distances stay equal. Two matchings whose total distances differ by less than n·2^-21 pixel may
be ranked either way, which changes a matched count only if matchings of *different sizes* tie
that closely (their costs differ by about ``oc`` per pair).

Across the thresholds of one image (``bsds.exact_counts``, through ``_Sweep``) a component keeps
its previous matching when no predicted pixel joined it and every pixel that left the component
was unmatched: any matching of the smaller graph is one of the larger, so the previous optimum
stays optimal. The other components go through the solver again.

Separate from :mod:`mtlbench.metrics.bsds`, which holds what surrounds the matching in the BSDS
evaluation (thresholds, thinning, counts, worker processes): this module is the matching alone,
from the pairs within the radius through the assignment graph and its solver to the reuse of a
matching from one threshold's map to the next.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

OUTLIER_COST = 100.0  # match.cc / correspondPixels default, in units of the matching radius
_COST_UNIT = 2.0**20  # solver weights are integers in units of 2^-20 pixel (module docstring)

_WithCost = tuple[np.ndarray, np.ndarray, float]


# --------------------------------------------------------------------------- pairs and matching


def match_radius(shape: tuple[int, ...], max_dist: float) -> float:
    """The matching radius in pixels: ``max_dist`` times the image diagonal."""
    h, w = shape[-2:]
    return float(max_dist) * math.hypot(h, w)


def _disk(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (dy, dx) with ``dy² + dx² <= r²`` and their lengths. The squared length is an
    integer m, and m <= r² iff m <= floor(r²): the test edge.py's ``disk_max`` uses."""
    reach = int(math.floor(radius))
    limit = math.floor(radius * radius)
    d = np.arange(-reach, reach + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    keep = dy * dy + dx * dx <= limit
    dy, dx = dy[keep], dx[keep]
    return dy, dx, np.sqrt((dy * dy + dx * dx).astype(np.float64))


def _pairs(pred_flat: np.ndarray, gt_flat: np.ndarray, shape: tuple[int, int],
           radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (predicted, ground-truth) pair at most ``radius`` apart.

    Args:
        pred_flat, gt_flat: flat indices of the pixels of each map (sorted).
        shape: H, W.

    Returns:
        (i, j, d): index into ``pred_flat``, index into ``gt_flat``, distance in pixels.
    """
    h, w = shape
    dy, dx, dist = _disk(radius)
    reach = int(math.floor(radius))
    width = w + 2 * reach
    # look the longer list up from the shorter one
    swap = pred_flat.size < gt_flat.size
    probe, table = (pred_flat, gt_flat) if swap else (gt_flat, pred_flat)
    ids = np.full((h + 2 * reach) * width, -1, np.int64)
    ty, tx = np.divmod(table, w)
    ids[(ty + reach) * width + tx + reach] = np.arange(table.size)
    py, px = np.divmod(probe, w)
    base = (py + reach) * width + px + reach
    found = ids[base[:, None] + (dy * width + dx)[None, :]]  # probe × offsets
    pi, ko = np.nonzero(found >= 0)
    other = found[pi, ko]
    d = dist[ko]
    return (pi, other, d) if swap else (other, pi, d)


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    cut = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.concatenate([[0], cut]), np.concatenate([cut, [sorted_keys.size]])


def _compact(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, index of each element among them), by sorting."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]])[:x.size]
    inverse = np.empty(x.size, np.int64)
    inverse[order] = np.cumsum(new) - 1
    return xs[new], inverse


def _assign(i: np.ndarray, j: np.ndarray, d: np.ndarray, n_pred: int, n_gt: int,
            outlier: float) -> np.ndarray:
    """Exact minimum-cost one-to-one matching of pixels (see the module docstring).

    Args:
        i, j, d: the pairs within the radius (local indices, every index used), distances.
        n_pred, n_gt: pixels on each side.
        outlier: the outlier cost in pixels.

    Returns:
        For each predicted pixel the ground-truth pixel it is matched to, -1 if none.
    """
    a, b = n_pred, n_gt
    n = a + b
    # rows: ground-truth outliers 0..b-1, predicted pixels b..n-1; columns: predicted outliers
    # 0..a-1, ground truth a..n-1 (a few % faster than the other way round). Each row lists its
    # own pixel or outlier first: the greedy pass of SciPy's feasibility check matches every row.
    per_row = np.concatenate([np.bincount(j, minlength=b), np.bincount(i, minlength=a)]) + 1
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(per_row, out=indptr[1:])
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float64)
    first = indptr[:-1]
    indices[first] = np.concatenate([a + np.arange(b), np.arange(a)])
    # integer weights (module docstring): LAPJVsp tests reduced costs for equality and can loop
    # forever on float rounding; +1 pixel keeps every weight nonzero. Its potentials stay below
    # n times the largest weight, which must stay exact in float64 (2^53)
    unit = min(_COST_UNIT, 2.0 ** math.floor(math.log2(2.0**52 / (n * (outlier + 2.0)))))
    out_w = float(np.rint(outlier * unit) + unit)
    data[first] = out_w
    for rows, cols, cost in ((b + i, a + j, np.rint(d * unit) + unit), (j, i, np.full(i.size, out_w))):
        order = np.argsort(rows, kind="stable")
        r = rows[order]
        rank = np.arange(r.size) - np.searchsorted(r, r)
        pos = first[r] + 1 + rank
        indices[pos] = cols[order]
        data[pos] = cost[order]
    graph = csr_matrix((data, indices, indptr), shape=(n, n))
    _, col = min_weight_full_bipartite_matching(graph)
    partner = np.asarray(col[b:], np.int64) - a
    partner[partner < 0] = -1
    return partner


def _components(i: np.ndarray, j: np.ndarray, n_pred: int, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected-component labels of the predicted and the ground-truth pixels (isolated
    pixels get labels of their own)."""
    n = n_pred + n_gt
    graph = csr_matrix((np.ones(i.size, np.int8), (i, n_pred + j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return label[:n_pred], label[n_pred:]


def _check_outlier(outlier_cost: float) -> None:
    if not outlier_cost > 1:
        # match.cc asserts outlierCost > maxDist: a pair within r must beat leaving both out
        raise ValueError(f"outlier_cost must be > 1 (in units of the matching radius), got {outlier_cost}")


_BATCH_PAIRS = 4000  # components with fewer pairs share one solver call (they stay independent)


def _solve_runs(i: np.ndarray, j: np.ndarray, d: np.ndarray, runs: list[np.ndarray],
                outlier: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched (predicted, ground-truth) pixel pairs of the given components.

    Args:
        i, j, d: all pairs.
        runs: for each component the indices of its pairs, the nearest first.

    Returns:
        (predicted pixel, ground-truth pixel) of every matched pair.
    """
    got_i: list[np.ndarray] = []
    got_j: list[np.ndarray] = []
    small: list[np.ndarray] = []
    for sel in runs:
        ci, cj = i[sel], j[sel]
        if (ci == ci[0]).all() or (cj == cj[0]).all():
            # one pixel on a side: it matches its nearest partner (a pair saves oc - d > 0)
            got_i.append(ci[:1])
            got_j.append(cj[:1])
        elif sel.size < _BATCH_PAIRS:
            small.append(sel)
        else:
            big_i, big_j = _solve_joint(i, j, d, [sel], outlier)
            got_i.append(big_i)
            got_j.append(big_j)
    if small:
        small_i, small_j = _solve_joint(i, j, d, small, outlier)
        got_i.append(small_i)
        got_j.append(small_j)
    if not got_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(got_i), np.concatenate(got_j)


def _solve_joint(i: np.ndarray, j: np.ndarray, d: np.ndarray, runs: list[np.ndarray],
                 outlier: float) -> tuple[np.ndarray, np.ndarray]:
    """One solver call for the union of some components (disjoint, so solved independently)."""
    sel = np.concatenate(runs)
    up, li = _compact(i[sel])
    ug, lj = _compact(j[sel])
    partner = _assign(li, lj, d[sel], up.size, ug.size, outlier)
    hit = partner >= 0
    return up[hit], ug[partner[hit]]


def _component_runs(i: np.ndarray, j: np.ndarray, d: np.ndarray, plab: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs grouped by component: (order, run starts, run ends, component label of each run);
    within a run the nearest pair comes first."""
    comp = plab[i]
    order = np.lexsort((d, comp))
    starts, ends = _runs(comp[order])
    return order, starts, ends, comp[order][starts]


def _solve(i: np.ndarray, j: np.ndarray, d: np.ndarray, n_pred: int, n_gt: int,
           outlier: float) -> np.ndarray:
    """Partner of every predicted pixel (-1: none) under the exact matching."""
    partner = np.full(n_pred, -1, np.int64)
    if i.size == 0:
        return partner
    plab, _ = _components(i, j, n_pred, n_gt)
    order, starts, ends, _ = _component_runs(i, j, d, plab)
    mi, mj = _solve_runs(i, j, d, [order[s:e] for s, e in zip(starts, ends)], outlier)
    partner[mi] = mj
    return partner


@overload
def correspond_pixels(pred: np.ndarray, gt: np.ndarray, max_dist: float = ..., outlier_cost: float = ...,
                      return_cost: Literal[False] = ...) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def correspond_pixels(pred: np.ndarray, gt: np.ndarray, max_dist: float = ..., outlier_cost: float = ..., *,
                      return_cost: Literal[True]) -> tuple[np.ndarray, np.ndarray, float]: ...


def correspond_pixels(pred: np.ndarray, gt: np.ndarray, max_dist: float = 0.0075, outlier_cost: float = OUTLIER_COST,
                      return_cost: bool = False) -> tuple[np.ndarray, np.ndarray] | _WithCost:
    """``correspondPixels(pred, gt, maxDist, outlierCost)`` with an exact minimum-cost matching.

    Args:
        pred, gt: H×W boundary maps (nonzero = boundary).
        max_dist: the matching radius as a fraction of the image diagonal.
        outlier_cost: cost of leaving a pixel unmatched, in units of the radius (> 1).
        return_cost: also return match.cc's cost: the distances of the matched pairs plus
            ``outlier_cost * r`` per unmatched pixel of either map.

    Returns:
        (matched predicted pixels, matched ground-truth pixels) as H×W bool maps, and the cost
        if asked. ``pred & ~matched`` are the false positives, ``gt & ~matched`` the misses.
    """
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(f"correspond_pixels expects two H×W maps, got {p.shape} and {g.shape}")
    if max_dist < 0:
        raise ValueError(f"max_dist must be >= 0, got {max_dist}")
    _check_outlier(outlier_cost)
    radius = match_radius(p.shape, max_dist)
    outlier = outlier_cost * radius
    pf, gf = np.flatnonzero(p), np.flatnonzero(g)
    i, j, d = _pairs(pf, gf, p.shape, radius)
    partner = _solve(i, j, d, pf.size, gf.size, outlier)
    hit = partner >= 0
    mp = np.zeros(p.size, bool)
    mg = np.zeros(p.size, bool)
    mp[pf[hit]] = True
    mg[gf[partner[hit]]] = True
    matched_pred, matched_gt = mp.reshape(p.shape), mg.reshape(p.shape)
    if not return_cost:
        return matched_pred, matched_gt
    dist = np.hypot(*np.subtract(np.divmod(pf[hit], p.shape[1]), np.divmod(gf[partner[hit]], p.shape[1])))
    unmatched = pf.size + gf.size - 2 * int(hit.sum())
    return matched_pred, matched_gt, float(dist.sum() + outlier * unmatched)


# --------------------------------------------------------------------------- across thresholds


class _Sweep:
    """The exact matched count of one image at successive thresholds, reusing components whose
    previous matching stays optimal (module docstring)."""

    def __init__(self, candidates: np.ndarray, gt: np.ndarray, radius: float, outlier: float) -> None:
        flat = np.flatnonzero(candidates)  # every pixel any threshold can predict
        gf = np.flatnonzero(gt)
        i, self.j, self.d = _pairs(flat, gf, gt.shape, radius)
        # only pixels with a ground-truth pixel in reach can ever match
        near, self.i = _compact(i)
        self.flat = flat[near]
        self.n_pred, self.n_gt = self.flat.size, gf.size
        self.outlier = outlier
        self.present = np.zeros(self.n_pred, bool)
        self.matched = np.zeros(self.n_pred, bool)
        self.plab = np.full(self.n_pred, -1, np.int64)
        self.glab = np.full(self.n_gt, -1, np.int64)

    def step(self, predicted: np.ndarray) -> int:
        """Matched pairs when ``predicted`` (H×W bool, a subset of the candidates) is the map."""
        present = predicted.ravel()[self.flat]
        keep = present[self.i]
        i, j, d = self.i[keep], self.j[keep], self.d[keep]
        added = present & ~self.present
        dirty = self.plab[self.present & ~present & self.matched]  # components that lost a matched pixel
        matched = np.zeros(self.n_pred, bool)
        if i.size == 0:
            self.present, self.matched = present, matched
            self.plab[:] = -1
            self.glab[:] = -1
            return 0
        plab, glab = _components(i, j, self.n_pred, self.n_gt)
        order, starts, ends, cs = _component_runs(i, j, d, plab)
        n_labels = int(max(plab.max(), glab.max())) + 1
        grew = np.zeros(n_labels, bool)
        grew[plab[added]] = True
        was_dirty = np.zeros(int(max(self.plab.max(), self.glab.max())) + 2, bool)
        was_dirty[dirty] = True
        before = self.glab[j[order][starts]]  # previous component of one ground-truth pixel of each
        # no new pixel, and the one component it was part of lost no matched pixel (its pixels
        # all had edges before, so their old labels are one component's)
        keep_old = ~grew[cs] & (before >= 0) & ~was_dirty[before]
        old = np.zeros(n_labels, bool)
        old[cs[keep_old]] = True
        matched[old[plab] & self.matched & present] = True
        fresh = np.flatnonzero(~keep_old)
        mi, _ = _solve_runs(i, j, d, [order[starts[r]:ends[r]] for r in fresh], self.outlier)
        matched[mi] = True
        count = int(matched.sum())
        self.present, self.matched, self.plab, self.glab = present, matched, plab, glab
        return count
