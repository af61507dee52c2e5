"""Exact BSDS edge evaluation of an image: per-threshold thinning and one-to-one matching.

BSDS, SEISM and Dollár's ``edgesEvalImg`` score an edge map threshold by threshold: the binary
map ``E >= t_k`` is thinned (``bwmorph(E, 'thin', inf)``), then ``correspondPixels(E, GT,
maxDist)`` pairs predicted with ground-truth pixels one to one. Matched over all predicted
pixels gives precision, matched over all ground-truth pixels recall.

The matching, ``correspondPixels`` as a minimum-cost assignment solved exactly, is
:mod:`mtlbench.metrics.bsds_match`. This module holds what surrounds it: the thresholds, the
thinning, the counts of one image (``exact_counts``) and of a batch in worker processes
(``exact_counts_batch``); ``edge.ods_ois_ap`` turns the counts into scores.

Thinning is ``bwmorph_thin``, scikit-image's ``thin``: Guo and Hall's two-subiteration parallel
algorithm as given in Lam, Lee & Suen (1992), p. 879 — the same survey and page that MATLAB's
``bwmorph`` documentation cites for ``'thin'`` — iterated until nothing changes.
"""

from __future__ import annotations

import atexit
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from mtlbench.metrics.bsds_match import OUTLIER_COST, _check_outlier, _Sweep, match_radius

try:  # the lookup tables behind skimage.morphology.thin (private; the fallback calls thin itself)
    from skimage.morphology._skeletonize import G123_LUT as _LUT_A
    from skimage.morphology._skeletonize import G123P_LUT as _LUT_B
    _LUTS: tuple[np.ndarray, np.ndarray] | None = (np.asarray(_LUT_A, bool), np.asarray(_LUT_B, bool))
except ImportError:  # pragma: no cover - depends on the scikit-image release
    _LUTS = None

# scikit-image's neighbourhood code: bit of the neighbour at (dy, dx), as its correlation mask
# [[8, 4, 2], [16, 0, 1], [32, 64, 128]]
_NEIGHBOURS = ((0, 1, 1), (-1, 1, 2), (-1, 0, 4), (-1, -1, 8), (0, -1, 16), (1, -1, 32), (1, 0, 64), (1, 1, 128))


# --------------------------------------------------------------------------- thinning


def bwmorph_thin(binary: np.ndarray) -> np.ndarray:
    """``bwmorph(binary, 'thin', inf)``: scikit-image's ``thin`` run to convergence.

    ``skimage.morphology.thin`` implements Guo & Hall's parallel thinning with the lookup tables
    of Lam, Lee & Suen (1992), p. 879, the reference MATLAB gives for ``'thin'``. This is the same
    computation, bit for bit (``tests/metrics/test_bsds.py`` compares them), evaluated only where
    a pixel's 3×3 neighbourhood changed since its last evaluation by the same sub-iteration: a
    pixel that was kept once is kept again until a neighbour goes. Edge maps after NMS are nearly
    thin already, so most thresholds cost one pass over the foreground.

    Args:
        binary: H×W, nonzero = foreground.

    Returns:
        The thinned map, H×W bool.
    """
    b = np.asarray(binary).astype(bool)
    if b.ndim != 2:
        raise ValueError(f"bwmorph_thin expects an H×W map, got shape {b.shape}")
    if _LUTS is None:  # pragma: no cover
        from skimage.morphology import thin

        return np.asarray(thin(b), bool)
    h, w = b.shape
    width = w + 2
    img = np.zeros((h + 2) * width, np.uint8)  # zero border: pixels outside the image are background
    img.reshape(h + 2, width)[1:-1, 1:-1] = b
    # neighbourhood code of every pixel, kept current as pixels are deleted
    code = np.zeros_like(img)
    img2, code2 = img.reshape(h + 2, width), code.reshape(h + 2, width)
    for dy, dx, bit in _NEIGHBOURS:
        code2[1:-1, 1:-1] |= img2[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx] * np.uint8(bit)
    offsets = np.array([dy * width + dx for dy, dx, _ in _NEIGHBOURS], np.int64)
    bits = np.array([bit for _, _, bit in _NEIGHBOURS], np.uint8)
    fg = np.flatnonzero(img)
    pending = [fg, fg]  # pixels each sub-iteration must (re)evaluate
    mark = np.zeros(img.size, bool)
    while pending[0].size or pending[1].size:
        for s, lut in enumerate(_LUTS):
            cand = pending[s]
            pending[s] = cand[:0]
            if cand.size == 0:
                continue
            mark[cand] = True
            mark[cand[img[cand] == 0]] = False
            cand = np.flatnonzero(mark)  # distinct foreground pixels, sorted
            mark[cand] = False
            gone = cand[lut[code[cand]]]
            if gone.size == 0:
                continue
            img[gone] = 0
            for off, bit in zip(offsets, bits):
                # the pixel at gone - off had gone as its neighbour in direction off (border
                # pixels wrap around harmlessly: they are background and never evaluated)
                code[gone - off] -= bit
            near = (gone[:, None] + offsets).ravel()
            near = near[img[near] == 1]
            pending = [np.concatenate([pending[0], near]), np.concatenate([pending[1], near])]
    return img.reshape(h + 2, width)[1:-1, 1:-1].astype(bool)


# --------------------------------------------------------------------------- threshold sweep


def levels(prob: np.ndarray, thresholds: int) -> np.ndarray:
    """Number of thresholds ``k/(K+1)`` each value reaches, 0..K: ``floor(prob * (K+1))`` in
    float64, exactly as ``edge._levels`` computes it, so both modes predict the same pixels."""
    k = int(thresholds)
    return np.clip(np.floor(np.asarray(prob, np.float64) * (k + 1)), 0, k).astype(np.int64)


def exact_counts(prob: np.ndarray, gt: np.ndarray, tolerance: float = 0.011, thresholds: int = 99,
                 thin: bool = True, outlier_cost: float = OUTLIER_COST) -> np.ndarray:
    """Per-threshold counts of one image with BSDS's one-to-one matching, exactly.

    At threshold ``t_k = k/(K+1)`` the map ``prob >= t_k`` (``levels``) is thinned with
    ``bwmorph_thin`` (``thin=True``, as ``edgesEvalImg`` and SEISM do) and matched against the
    ground truth with ``bsds_match.correspond_pixels`` semantics, radius
    ``tolerance * sqrt(H² + W²)``. A threshold whose thinned map equals the previous one's
    repeats its counts.

    Args:
        prob: H×W edge probabilities (after NMS, as for ``edge.edge_counts``).
        gt: H×W ground-truth edges (nonzero = edge).
        tolerance: matching radius as a fraction of the image diagonal.
        thresholds: number of thresholds K.
        thin: thin each threshold's binary map.
        outlier_cost: match.cc's outlier cost in units of the radius (> 1).

    Returns:
        int64, 4×K, rows as ``edge.edge_counts``: matched predicted pixels, predicted pixels,
        matched ground-truth pixels, ground-truth pixels.
    """
    prob = np.asarray(prob)
    g = np.asarray(gt).astype(bool)
    if prob.ndim != 2 or prob.shape != g.shape:
        raise ValueError(f"exact_counts expects two H×W maps, got {prob.shape} and {g.shape}")
    if tolerance < 0 or thresholds < 1:
        raise ValueError("tolerance must be >= 0 and thresholds >= 1")
    _check_outlier(outlier_cost)
    k_max = int(thresholds)
    level = levels(prob, k_max)
    radius = match_radius(g.shape, tolerance)
    out = np.zeros((4, k_max), np.int64)
    out[3] = int(g.sum())
    sweep = _Sweep(level >= 1, g, radius, outlier_cost * radius)
    previous: np.ndarray | None = None
    for k in range(1, k_max + 1):
        binary = level >= k
        if not binary.any():
            break  # and so are the higher thresholds
        mapped = bwmorph_thin(binary) if thin else binary
        if previous is not None and np.array_equal(mapped, previous):
            out[:, k - 1] = out[:, k - 2]
            continue
        m = sweep.step(mapped)
        out[:, k - 1] = (m, int(mapped.sum()), m, out[3, 0])
        previous = mapped
    return out


# --------------------------------------------------------------------------- batches


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the session (starting a worker costs more than an image).
    ``forkserver`` (``spawn`` where there is none): never ``fork`` a process that may hold torch
    threads or a CUDA context."""
    pool = _POOLS.get(workers)
    if pool is None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        _POOLS[workers] = pool
    return pool


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Workers started inside do not import the parent's ``__main__``.

    A spawn or forkserver child normally runs the parent's main script again (as ``__mp_main__``)
    to find the functions it is sent; a training script would import torch there, or train, where
    it lacks the ``if __name__ == "__main__"`` guard. The workers only need this module, which
    they import by name, so the main module's file and spec are hidden while they start."""
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__")
                             if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def _counts_one(args: tuple[np.ndarray, np.ndarray, float, int, bool, float]) -> np.ndarray:
    prob, gt, tolerance, thresholds, thin, outlier_cost = args
    return exact_counts(prob, gt, tolerance, thresholds, thin, outlier_cost)


def exact_counts_batch(prob: np.ndarray, gt: np.ndarray, tolerance: float = 0.011, thresholds: int = 99,
                       thin: bool = True, outlier_cost: float = OUTLIER_COST, workers: int = 0) -> np.ndarray:
    """``exact_counts`` of every image of a batch, in worker processes when ``workers > 1``.

    Args:
        prob: N×H×W edge probabilities.
        gt: N×H×W ground-truth edges.
        workers: processes (0 or 1: in this process). Images are independent; results come back
            in order.

    Returns:
        int64, N×4×K.
    """
    p = np.asarray(prob)
    g = np.asarray(gt)
    if p.ndim != 3 or p.shape != g.shape:
        raise ValueError(f"exact_counts_batch expects two N×H×W arrays, got {p.shape} and {g.shape}")
    jobs = [(p[n], g[n], tolerance, thresholds, thin, outlier_cost) for n in range(p.shape[0])]
    if workers > 1 and len(jobs) > 1:
        with _main_hidden():  # workers start on demand, inside map
            counts = list(_pool(int(workers)).map(_counts_one, jobs))
    else:
        counts = [_counts_one(job) for job in jobs]
    if not counts:
        return np.zeros((0, 4, int(thresholds)), np.int64)
    return np.stack(counts)
