"""Edge detection metrics: ODS, OIS and AP over a threshold sweep, as in the BSDS benchmark.

The pipeline follows Dollár's structured-edge toolbox (``edgesNms`` then ``edgesEvalImg`` and
``edgesEvalDir``), the evaluation BSDS and NYUD edge papers report (SEISM, which the NYUD odsF of
MTI-Net and later come from, calls ``edgesEvalImg`` once per threshold map):

1. ``thin``: non-maximum suppression of the probability map (one pixel wide ridges).
2. Per image and threshold ``t_k = k/(K+1)``: the matched and total predicted pixels and the
   matched and total ground-truth pixels, with a matching radius of ``tolerance * sqrt(H² + W²)``
   pixels (0.011: the NYUD / MTI-Net setting; BSDS uses 0.0075). Two ways to count, chosen by
   ``EdgeMetrics(matching=...)``; both predict the pixels with ``prob >= t_k`` (``_levels``):

   * ``"exact"`` (``mtlbench.metrics.bsds.exact_counts``, on the CPU): the toolbox's step itself.
     Each threshold's binary map is thinned (``bwmorph(E, 'thin', inf)``, scikit-image's
     ``thin``), then matched one to one with ``correspondPixels``' semantics: the minimum-cost
     assignment where a pair within the radius costs its distance and a pixel left out costs
     100 radii (match.cc's graph), solved exactly (match.cc's CSA solves it on a random sparse
     outlier graph and can miss the minimum by a few pairs). Left different from SEISM: NMS is
     this module's port of ``edgesNms``, there is one ground-truth map per image, and the
     thresholds apply to float probabilities (SEISM's to 8-bit PNGs).
   * ``"fast"`` (``edge_counts``, on the device, the default): two deliberate shortcuts.

     - Matching is many-to-one: a predicted pixel is matched when any ground-truth edge pixel
       lies within the radius, and a ground-truth pixel when any predicted pixel does. On the
       same binary map this accepts every pair one-to-one matching accepts, so it gives equal or
       higher precision and recall: equal when matches are unambiguous (a thin prediction against
       a thin ground-truth line), higher where several predicted pixels crowd around one
       ground-truth pixel.
     - The binary map at each threshold is not thinned again, so every threshold is counted from
       one histogram instead of one image operation per threshold. NMS leaves most ridges one
       pixel wide, but not flat or saturated ones (its 1.01 slack keeps a plateau): a band of
       equal values stays a band here, where the toolbox would thin it to a line. Such a band
       counts its unmatched pixels, so precision can also come out *lower* than the toolbox's (an
       11-pixel band of 0.99 over a 1-pixel line at 256×256: precision 7/11 here, 1.0 there).

   Size of the difference, measured on ``benchmarks/bench_ods.py``'s synthetic maps (32 images
   at 256×256: blurred label boundaries, partly missed, with clutter and pixel noise, after NMS):
   fast ODS 0.777, OIS 0.806, AP 0.799; exact 0.714, 0.747, 0.711. Of the 0.063 ODS, 0.068 is the
   many-to-one matching (exact matching without the per-threshold thinning: 0.709) and -0.005
   the thinning: the gap is predicted pixels crowding around ground-truth ones. The price: exact
   took 2 s per such 256×256 image on one core (some 500 times the fast mode) and 20-27 s at 480×640
   (``benchmarks/bench_ods.py --exact``); ``EdgeMetrics(workers=...)`` spreads images over
   processes.
3. ``ods_ois_ap``: dataset-level precision/recall, best F at a fixed threshold (ODS), best F per
   image (OIS) and average precision (AP).

Score conventions (OIS without interpolation, AP over 101 recalls divided by 100, AP 0 for a
single distinct recall) are the toolbox's and are listed in ``ods_ois_ap``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlbench.metrics.base import Group, Metric
from mtlbench.metrics.geometry import disk_max, truncated_edt

_EPS = 2.220446049250313e-16  # MATLAB eps: the toolbox's guard against 0/0
_NMS_MULTIPLIER = 1.01  # edgesNms: conservative suppression
_BORDER = 5  # edgesNms: attenuate edges within this many pixels of the border
_TRI_RADIUS = 4  # edgesDetect: triangle smoothing before orientation
MATCHINGS = ("fast", "exact", "auto")  # auto: resolved by the caller; counts as fast here


# --------------------------------------------------------------------------- thinning


def _symmetric_pad(x: Tensor, r: int, dim: int) -> Tensor:
    """``x`` padded by ``r`` on both sides of ``dim``, mirrored including the edge pixel
    (MATLAB ``'symmetric'``, what ``convTri`` uses)."""
    n = x.shape[dim]
    idx = torch.arange(-r, n + r, device=x.device)
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return x.index_select(dim, idx.clamp(0, n - 1))  # clamp: images narrower than r


def _conv_tri(x: Tensor, r: int) -> Tensor:
    """Separable triangle filter ``[1 … r+1 … 1] / (r+1)²`` on B×H×W (``convTri``).

    In-place weighted sums of shifted slices: a one-channel 9-tap ``conv2d`` is a few times
    slower on CPU."""
    h, w = x.shape[-2:]
    weights = [float(min(i, 2 * r + 2 - i)) for i in range(1, 2 * r + 2)]
    y = _symmetric_pad(x, r, -1)
    acc = y[..., 0:w].clone()
    for i in range(1, len(weights)):
        acc.add_(y[..., i:i + w], alpha=weights[i])
    y = _symmetric_pad(acc, r, -2)
    acc = y[..., 0:h, :].clone()
    for i in range(1, len(weights)):
        acc.add_(y[..., i:i + h, :], alpha=weights[i])
    return acc.div_(float((r + 1) ** 4))


def _gradient(x: Tensor, dim: int) -> Tensor:
    """Central differences inside, one-sided at the ends (MATLAB ``gradient``)."""
    n = x.shape[dim]
    out = torch.zeros_like(x)
    if n < 2:
        return out
    torch.sub(x.narrow(dim, 1, 1), x.narrow(dim, 0, 1), out=out.narrow(dim, 0, 1))
    torch.sub(x.narrow(dim, n - 1, 1), x.narrow(dim, n - 2, 1), out=out.narrow(dim, n - 1, 1))
    if n > 2:
        torch.sub(x.narrow(dim, 2, n - 2), x.narrow(dim, 0, n - 2), out=out.narrow(dim, 1, n - 2))
        out.narrow(dim, 1, n - 2).mul_(0.5)
    return out


def _normal(prob: Tensor) -> tuple[Tensor, Tensor]:
    """(cos O, sin O) of the edge normal ``O = atan(Oyy·sign(-Oxy) / (Oxx + 1e-5)) mod π`` from the
    second derivatives of the smoothed map (``edgesDetect``).

    With z the argument of atan, cos(atan z) = 1/sqrt(1 + z²) and sin(atan z) = z/sqrt(1 + z²);
    the ``mod π`` only flips both signs, which suppression along ±(cos O, sin O) ignores. So no
    trigonometric function is evaluated."""
    s = _conv_tri(prob, _TRI_RADIUS)
    ox, oy = _gradient(s, -1), _gradient(s, -2)
    oxx, oxy, oyy = _gradient(ox, -1), _gradient(oy, -1), _gradient(oy, -2)
    z = oyy.mul_(oxy.neg_().sign_()).div_(oxx.add_(1e-5)).clamp_(-1e18, 1e18)  # ±inf → a vertical normal
    cos_o = z.square().add_(1.0).rsqrt_()
    return cos_o, z.mul_(cos_o)


def _bilinear(img: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``img`` (B×H×W) sampled at column ``x`` and row ``y`` (B×H×W), coordinates clamped to
    ``[0, size - 1.001]`` as in ``edgesNmsMex``. ``grid_sample`` is several times faster than
    gathering the four corners; its coordinate normalisation costs a few ulps."""
    h, w = img.shape[-2:]
    grid = torch.empty(*x.shape, 2, dtype=x.dtype, device=x.device)  # (x, y) pairs, written in place
    torch.clamp(x, 0, w - 1.001, out=grid[..., 0]).mul_(2 / max(w - 1, 1)).sub_(1)
    torch.clamp(y, 0, h - 1.001, out=grid[..., 1]).mul_(2 / max(h - 1, 1)).sub_(1)
    out = F.grid_sample(img[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, 0]


def thin(prob: Tensor) -> Tensor:
    """Non-maximum suppression of edge probabilities, as ``edgesNms`` in Dollár's toolbox.

    The edge normal ``O = atan(Oyy·sign(-Oxy) / (Oxx + 1e-5)) mod π`` comes from the second
    derivatives of the map smoothed by a radius-4 triangle filter. A pixel is set to 0 when
    1.01 × its value is below either neighbour sampled bilinearly one pixel away along
    ±(cos O, sin O); edges within 5 px of the border are scaled by ``d/5`` (``d``: distance to
    the border in pixels, 0 on it). As in the toolbox, where ``Oxy`` is exactly 0 (e.g. an exactly
    horizontal ridge) the formula gives ``O = 0`` and such a ridge is not thinned; real network
    outputs are never exact enough for that to matter.

    Args:
        prob: edge probabilities, B×H×W.

    Returns:
        The thinned map, B×H×W, same dtype.
    """
    if prob.dim() != 3:
        raise ValueError(f"thin expects B×H×W, got shape {tuple(prob.shape)}")
    h, w = prob.shape[-2:]
    e0 = prob.float()
    cos_o, sin_o = _normal(e0)
    ys = torch.arange(h, device=e0.device, dtype=e0.dtype).view(1, h, 1)
    xs = torch.arange(w, device=e0.device, dtype=e0.dtype).view(1, 1, w)
    e = e0 * _NMS_MULTIPLIER
    keep = (e >= _bilinear(e0, xs + cos_o, ys + sin_o)) & (e >= _bilinear(e0, xs - cos_o, ys - sin_o))
    out = torch.where(keep, e0, torch.zeros_like(e0))
    # border attenuation, s capped at half the image size as in the toolbox
    s = min(_BORDER, w // 2, h // 2)
    if s > 0:
        fy = torch.minimum(ys, h - 1 - ys).clamp(max=s) / s
        fx = torch.minimum(xs, w - 1 - xs).clamp(max=s) / s
        out = out * fy * fx
    return out.to(prob.dtype)


# --------------------------------------------------------------------------- counting


def threshold_values(k: int) -> Tensor:
    """The ``k`` evaluation thresholds ``i/(k+1)``, i = 1..k (float64)."""
    return torch.arange(1, k + 1, dtype=torch.float64) / (k + 1)


def _levels(prob: Tensor, k: int) -> Tensor:
    """Number of thresholds ``i/(k+1)`` each value reaches (``prob >= t_i``), 0..k.

    For float32 values the product with a small integer is exact in float64, so the floor equals
    the count of float64 thresholds at or below the value."""
    return torch.floor(prob.double() * (k + 1)).clamp(0, k).long()


def _tail_sums(hist: Tensor) -> Tensor:
    """``out[..., i] = hist[..., i:].sum()``: how many values reach level ``i``."""
    return hist.flip(-1).cumsum(-1).flip(-1)


def edge_counts(prob: Tensor, gt: Tensor, tolerance: float = 0.011, thresholds: int = 99) -> Tensor:
    """Per-image, per-threshold matching counts of an (already thinned) edge map.

    At threshold ``t_k = k/(K+1)`` (k = 1..K) a pixel is a predicted edge where ``prob >= t_k``.
    With ``r = tolerance · sqrt(H² + W²)`` pixels, a predicted edge pixel is matched if a
    ground-truth edge pixel lies within Euclidean distance ``r`` (``<= r``), and a ground-truth
    pixel is matched if a predicted edge pixel at that threshold does (many-to-one matching, see
    the module docstring). Each pixel's distance to the ground truth and each ground-truth
    pixel's best prediction within ``r`` are computed once; the threshold sweep is a histogram.

    Args:
        prob: edge probabilities, B×H×W.
        gt: ground-truth edges, B×H×W, bool (or anything where nonzero is an edge).
        tolerance: matching radius as a fraction of the image diagonal.
        thresholds: number of thresholds K.

    Returns:
        int64, B×4×K: matched predicted pixels, predicted pixels, matched ground-truth pixels,
        ground-truth pixels.
    """
    if prob.dim() != 3 or prob.shape != gt.shape:
        raise ValueError(f"edge_counts expects two B×H×W maps, got {tuple(prob.shape)} and {tuple(gt.shape)}")
    b, h, w = prob.shape
    k = int(thresholds)
    gt = gt.bool()
    radius = tolerance * math.hypot(h, w)
    bins = k + 1
    batch = torch.arange(b, device=prob.device).view(b, 1, 1) * bins

    # predicted pixels: level of each, split by whether a ground-truth pixel is within r. A pixel
    # distance is the root of an integer m, and m <= r² iff m <= floor(r²) (the test disk_max
    # uses): comparing with the midpoint between √floor(r²) and the next root is exact with
    # margin. The edt limit lies beyond it, so clamped (far) pixels fail the test.
    n = math.floor(radius * radius)
    cut = (math.sqrt(n) + math.sqrt(n + 1)) / 2
    near_gt = truncated_edt(gt, cut + 1.0) <= cut
    key = (near_gt * bins).add_(_levels(prob, k)).add_(2 * batch)  # image i: bins [2i, 2i+2)·bins
    hist = torch.bincount(key.flatten(), minlength=2 * b * bins).view(b, 2, bins)
    pred_all = _tail_sums(hist.sum(1))[:, 1:]
    pred_matched = _tail_sums(hist[:, 1])[:, 1:]

    # ground-truth pixels: the best prediction within r gives the last threshold matching each
    # (levels are monotone in the value, so the max is taken on values, the level of few pixels)
    best = _levels(disk_max(prob.float(), radius)[gt], k)
    image = torch.repeat_interleave(torch.arange(b, device=prob.device), gt.flatten(1).sum(1))
    ghist = torch.bincount(image * bins + best, minlength=b * bins).view(b, bins)
    gt_matched = _tail_sums(ghist)[:, 1:]
    gt_all = gt.flatten(1).sum(1, keepdim=True).expand(b, k)
    return torch.stack([pred_matched, pred_all, gt_matched, gt_all], 1)


# --------------------------------------------------------------------------- scores


def _prf(cnt_p: Tensor, sum_p: Tensor, cnt_r: Tensor, sum_r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Precision, recall, F with the toolbox's ``max(eps, ·)`` denominators."""
    p = cnt_p / sum_p.clamp(min=_EPS)
    r = cnt_r / sum_r.clamp(min=_EPS)
    return p, r, 2 * p * r / (p + r).clamp(min=_EPS)


def _best_interpolated(t: Tensor, r: Tensor, p: Tensor) -> tuple[float, float, float, float]:
    """Best F along the piecewise-linear P/R curve, 100 samples per threshold segment
    (``findBestRPF``). Returns (f, precision, recall, threshold); ties keep the first."""
    if t.numel() == 1:
        f = 2 * p * r / (p + r).clamp(min=_EPS)
        return float(f[0]), float(p[0]), float(r[0]), float(t[0])
    a = torch.linspace(0, 1, 100, dtype=torch.float64)

    def seg(v: Tensor) -> Tensor:
        return v[1:, None] * a + v[:-1, None] * (1 - a)

    rj, pj, tj = seg(r), seg(p), seg(t)
    fj = 2 * pj * rj / (pj + rj).clamp(min=_EPS)
    i = int(torch.argmax(fj.flatten()))  # first maximum, as the toolbox's strict ">"
    return float(fj.flatten()[i]), float(pj.flatten()[i]), float(rj.flatten()[i]), float(tj.flatten()[i])


def _average_precision(r: Tensor, p: Tensor) -> float:
    """``edgesEvalDir`` AP: precision linearly interpolated at recall 0, 0.01, …, 1 where the
    recall range covers it, summed and divided by 100 (the toolbox's /100, not /101)."""
    # one point per distinct recall: the highest threshold having it (pre-R2013a ``unique``)
    order = torch.arange(r.numel() - 1, -1, -1)
    rr, pp = r[order], p[order]
    uniq, inverse = torch.unique(rr, sorted=True, return_inverse=True)
    pick = torch.full((uniq.numel(),), rr.numel(), dtype=torch.long)
    pick.scatter_reduce_(0, inverse, torch.arange(rr.numel()), reduce="amin")
    ru, pu = uniq, pp[pick]
    if ru.numel() < 2:
        return 0.0
    q = torch.arange(101, dtype=torch.float64) / 100
    defined = (q >= ru[0]) & (q <= ru[-1])
    q = q[defined]
    j = torch.searchsorted(ru, q, right=True).clamp(1, ru.numel() - 1)
    r0, r1, p0, p1 = ru[j - 1], ru[j], pu[j - 1], pu[j]
    vals = p0 + (p1 - p0) * (q - r0) / (r1 - r0)
    return float(vals.sum() / 100)


def ods_ois_ap(counts: Tensor) -> dict[str, float]:
    """ODS, OIS and AP from per-image counts, as ``edgesEvalDir``.

    * ODS: counts summed over images give P and R per threshold; the best F along the curve
      linearly interpolated between adjacent thresholds (100 steps per pair, ``findBestRPF``).
    * OIS: per image, the threshold of its best (not interpolated) F, first on ties; the counts
      at those thresholds are summed over images and P, R, F taken from the sums.
    * AP: precision interpolated at recall 0:0.01:1 within the recall range covered, summed
      and divided by 100 (so at most 1.01, the toolbox's off-by-one kept for comparability);
      0 when fewer than two distinct recalls occur.

    ``P = matched/max(eps, predicted)``: a threshold without any prediction has P = 0.

    Args:
        counts: N×4×K (see ``edge_counts``), N >= 1 images.

    Returns:
        ``ods``, ``ods_precision``, ``ods_recall``, ``ods_threshold``, ``ois``,
        ``ois_precision``, ``ois_recall``, ``ap``.
    """
    c = counts.detach().cpu().double()
    if c.dim() != 3 or c.shape[1] != 4 or c.shape[0] == 0:
        raise ValueError(f"counts must be N×4×K with N >= 1, got {tuple(counts.shape)}")
    t = threshold_values(c.shape[-1])
    tot = c.sum(0)
    p, r, _ = _prf(tot[0], tot[1], tot[2], tot[3])
    ods, ods_p, ods_r, ods_t = _best_interpolated(t, r, p)
    _, _, f_img = _prf(c[:, 0], c[:, 1], c[:, 2], c[:, 3])
    best = f_img.argmax(1)  # first maximum per image
    at_best = c.gather(2, best.view(-1, 1, 1).expand(-1, 4, 1))[..., 0].sum(0)
    ois_p, ois_r, ois = _prf(at_best[0], at_best[1], at_best[2], at_best[3])
    return {
        "ods": ods, "ods_precision": ods_p, "ods_recall": ods_r, "ods_threshold": ods_t,
        "ois": float(ois), "ois_precision": float(ois_p), "ois_recall": float(ois_r),
        "ap": _average_precision(r, p),
    }


# --------------------------------------------------------------------------- metric


class EdgeMetrics(Metric):
    """ODS / OIS / AP of edge maps with a distance tolerance (BSDS-style, see module docstring).

    Per-image counts (4×K integers) are kept so that OIS can pick each image's threshold.

    Args:
        tolerance: matching radius as a fraction of the image diagonal (0.011: NYUD setting).
        thresholds: number of thresholds K, at ``k/(K+1)``.
        nms: thin predictions with ``thin`` before counting (as the toolbox's users do).
        matching: ``"fast"`` (``edge_counts``, on the device) or ``"exact"`` (BSDS one-to-one
            matching with per-threshold thinning, ``bsds.exact_counts``, on the CPU); see the module
            docstring. ``"auto"`` is the configuration's "let the trainer decide"
            (``engine.evaluation.eval_plan`` resolves it); a metric built with it counts as fast.
        workers: processes for ``"exact"`` (0: in this process); images are independent.

    Example:
        >>> m = EdgeMetrics()
        >>> gt = torch.zeros(1, 64, 64); gt[0, 8:56, 30] = 1
        >>> m.update(gt.clone(), {"edge": gt})
        >>> round(m.compute()["ods"], 6)
        1.0
    """

    task = "edge"
    names = ("ods", "ois", "ap", "ods_precision", "ods_recall", "ods_threshold")

    def __init__(self, tolerance: float = 0.011, thresholds: int = 99, nms: bool = True,
                 matching: str = "fast", workers: int = 0) -> None:
        if tolerance < 0 or thresholds < 1:
            raise ValueError("tolerance must be >= 0 and thresholds >= 1")
        if matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {', '.join(map(repr, MATCHINGS))}, got {matching!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.tolerance = float(tolerance)
        self.thresholds = int(thresholds)
        self.nms = nms
        self.matching = matching
        self.workers = int(workers)
        self.reset()

    def reset(self) -> None:
        self._counts: list[Tensor] = []

    @staticmethod
    def _squeeze(x: Tensor, what: str) -> Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            return x[:, 0]
        if x.dim() != 3:
            raise ValueError(f"{what} must be B×1×H×W or B×H×W, got shape {tuple(x.shape)}")
        return x

    @torch.no_grad()
    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        """Count one batch.

        Args:
            pred: edge probabilities in [0, 1], B×1×H×W or B×H×W.
            batch: ``batch["edge"]`` of the same shape, an edge where > 0.5.
        """
        prob = self._squeeze(pred, "pred").float()
        gt = self._squeeze(batch["edge"], "batch['edge']") > 0.5
        if prob.shape != gt.shape:
            raise ValueError(f"pred {tuple(prob.shape)} and edge {tuple(gt.shape)} differ")
        if self.nms:
            prob = thin(prob)
        if self.matching == "exact":
            from mtlbench.metrics.bsds import exact_counts_batch  # SciPy and scikit-image: only when asked

            counts = exact_counts_batch(prob.float().cpu().numpy(), gt.cpu().numpy(), self.tolerance,
                                        self.thresholds, workers=self.workers)
            self._counts.append(torch.from_numpy(counts).to(prob.device))
        else:
            self._counts.append(edge_counts(prob, gt, self.tolerance, self.thresholds))

    def reduce(self, group: Group, device: torch.device) -> None:
        """Every process's per-image counts, in rank order (OIS needs them per image)."""
        mine = self._all()
        if mine is None:
            mine = torch.zeros((0, 4, self.thresholds), dtype=torch.long, device=device)
        every = group.cat(mine.to(device))
        self._counts = [every] if every.shape[0] else []

    def _all(self) -> Tensor | None:
        return torch.cat(self._counts) if self._counts else None

    def compute(self) -> dict[str, float]:
        """ODS, OIS, AP and the ODS operating point; ``{}`` before any image."""
        counts = self._all()
        if counts is None:
            return {}
        scores = ods_ois_ap(counts)
        return {n: scores[n] for n in self.names}

    def curve(self) -> dict[str, list[float]]:
        """The dataset-level P/R curve, one point per threshold (empty lists before any image)."""
        counts = self._all()
        if counts is None:
            return {"threshold": [], "precision": [], "recall": [], "fscore": []}
        tot = counts.double().sum(0)
        p, r, f = _prf(tot[0], tot[1], tot[2], tot[3])
        return {"threshold": threshold_values(self.thresholds).tolist(), "precision": p.tolist(),
                "recall": r.tolist(), "fscore": f.tolist()}
