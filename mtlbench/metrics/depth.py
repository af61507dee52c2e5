"""Depth metrics in metres, in both conventions the literature uses.

*Pooled* (the multi-task convention: MTI-Net, PAD-Net, InvPT): every valid pixel of the split
counts once, so large images and images with many valid pixels weigh more. The keys are the bare
names (``rmse``).

*Per image* (the depth convention: Eigen et al., BTS, AdaBins, ZoeDepth): each image's metric is
computed over its own valid pixels, then averaged over images. The keys end in ``_img``
(``rmse_img``).

For a valid pixel with prediction p and ground truth g (metres; p clipped to the cap range):

- ``mae`` = mean |p − g|; ``rmse`` = sqrt(mean (p − g)²)
- ``abs_rel`` = mean |p − g| / g; ``sq_rel`` = mean (p − g)² / g
- ``rmse_log`` = sqrt(mean (ln p − ln g)²); ``log10`` = mean |log10 p − log10 g|
- ``silog`` = 100 · sqrt(mean d² − (mean d)²) with d = ln p − ln g (the KITTI/BTS form, λ = 1)
- ``delta{k}`` = fraction with max(p/g, g/p) < 1.25^k
- ``mae_norm``/``rmse_norm`` = pooled MAE/RMSE divided by the normalisation depth: the numbers
  *Beneath the Surface* reports (it evaluates depth normalised to [0, 1])
- ``dbe_acc``/``dbe_comp``: the iBims-1 depth-boundary errors in pixels, averaged over images
  whose ground truth has depth edges (see :mod:`mtlbench.metrics.boundary`)

**Precision.** Every per-pixel term and every sum is float64 (inputs are converted first, exactly),
so the printed digits are the definitions' (float32 terms cost up to 3e-5 relative on a 480×640
frame and turned a SILog of 0 into 2.8). Two places need more than float64 alone:

- SILog is a variance, and mean d² − (mean d)² cancels catastrophically when the spread of d is
  small against its mean (a prediction exactly twice the ground truth: SILog 0, but the difference
  of two ≈0.48 means is off by ~1e-16, whose square root, ×100, is ~1e-6). So each image keeps
  its centred Σ(d − mean_i d)², and the split's variance is assembled at the end around the pooled
  mean (Chan et al.'s parallel variance): Σ_i M2_i + Σ_i n_i (mean_i − mean)². This needs each
  image's count and Σd at the end, so the state is a small per-image table (12 numbers per image,
  concatenated over processes like the edge counts), not a running sum.
- δ compares max(p, g) < 1.25^k · min(p, g) (equivalent for positive p, g). 1.25^k = 5^k/4^k has
  at most 7 significant bits, so for float32 inputs (what ``predict`` and the datasets give) the
  product is exact in float64 and the comparison decides exactly, ties included: p = 4, g = 5 and
  p = 5, g = 4 both have a ratio of exactly 1.25, which is not < 1.25. (Comparing |ln p − ln g|
  with k·ln 1.25, as before, put one tie inside and the other outside.) A prediction clipped to a
  float64 bound (``min_depth``) is decided to within one rounding.

**Bad predictions.** A non-finite prediction (NaN, ±inf) at a valid pixel is not a miss to score:
it means the model or its ``predict`` is broken. Such pixels are counted (device-resident, summed
over processes), left out of every sum, and :meth:`DepthMetrics.compute` raises a ``ValueError``
naming how many there were. Non-finite values where the ground truth is invalid are ignored.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlbench.errors import BadPredictionError
from mtlbench.metrics.base import Group, Metric
from mtlbench.metrics.boundary import depth_boundary_errors

# Eigen et al.'s evaluation crop of a 480×640 NYUv2 frame: rows 45:471, columns 41:601
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)

_BASE = ("mae", "rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
# each image's row of the table: its valid-pixel count, then these sums over its valid pixels
# (dlog = ln p − ln g; dlog_abs = |dlog|; d1..d3 the δ counts; dlog_m2 = Σ (dlog − its image mean)²)
_TERMS = ("abs", "sq", "rel", "sq_rel", "dlog", "dlog_sq", "dlog_abs", "d1", "d2", "d3", "dlog_m2")
_COLUMNS = 1 + len(_TERMS)
_SUM_D = 1 + _TERMS.index("dlog")  # the column of Σd
_DELTA = (1.25, 1.25**2, 1.25**3)  # exact binary fractions: 5/4, 25/16, 125/64


def eigen_mask(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """Eigen's crop as an H×W mask; scaled proportionally when the frame was resized from 480×640."""
    r0, r1, c0, c1 = EIGEN_CROP
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[round(r0 * height):round(r1 * height), round(c0 * width):round(c1 * width)] = True
    return mask


def _finish(s: Tensor, m2: Tensor) -> dict[str, Tensor]:
    """Metrics from sums ``s`` (…×12: count then ``_TERMS``) and the centred Σ(d − mean d)² ``m2``
    of the same pixels; any leading shape."""
    n = s[..., 0]
    mean = {t: s[..., i + 1] / n for i, t in enumerate(_TERMS)}
    return {
        "mae": mean["abs"],
        "rmse": mean["sq"].sqrt(),
        "abs_rel": mean["rel"],
        "sq_rel": mean["sq_rel"],
        "rmse_log": mean["dlog_sq"].sqrt(),
        "log10": mean["dlog_abs"] / math.log(10),  # |log10 p − log10 g| = |ln p − ln g| / ln 10
        "silog": 100 * (m2 / n).sqrt(),
        "delta1": mean["d1"],
        "delta2": mean["d2"],
        "delta3": mean["d3"],
    }


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Σ a·b of two B×N tensors, as a batched matrix product: no B×N product in memory."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class DepthMetrics(Metric):
    """Depth metrics over the valid pixels of a split, pooled and per image (module docstring).

    A pixel is valid where ``min_depth < g <= cap`` (and inside Eigen's crop if asked);
    predictions are clipped to ``[min_depth, cap]``. A non-finite prediction at a valid pixel is
    an error that :meth:`compute` raises (module docstring, "Bad predictions").

    Args:
        max_depth: the normalisation depth of the model's output (for ``*_norm``), metres.
        min_depth: lower validity bound, metres.
        cap: upper validity bound and prediction clip, metres; ``None``: ``max_depth``.
        eigen_crop: evaluate only inside Eigen's crop.
        boundaries: also compute the depth-boundary errors (``dbe_*``).

    Example:
        >>> m = DepthMetrics(max_depth=10.0, boundaries=False)
        >>> m.update(torch.tensor([[[2.0, 4.0]]]), {"depth": torch.tensor([[[2.0, 2.0]]])})
        >>> m.compute()["mae"]
        1.0
    """

    task = "depth"
    summed = ("_bad", "_dbe")  # the per-image table is concatenated over processes (reduce)

    def __init__(self, max_depth: float = 10.0, min_depth: float = 1e-3, cap: float | None = None,
                 eigen_crop: bool = False, boundaries: bool = True) -> None:
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.cap = max_depth if cap is None else cap
        if not 0 <= min_depth < self.cap:
            raise ValueError(f"depth range [{min_depth}, {self.cap}] is empty")
        self.eigen_crop = eigen_crop
        self.boundaries = boundaries
        per_image = tuple(f"{k}_img" for k in _BASE)
        self.names = _BASE + ("mae_norm", "rmse_norm") + per_image + (("dbe_acc", "dbe_comp") if boundaries else ())
        self.reset()

    def reset(self) -> None:
        self._images: list[Tensor] = []  # per batch, B×12: each image's count and sums (_TERMS)
        self._bad = torch.zeros((), dtype=torch.int64)  # non-finite predictions at valid pixels
        self._dbe = torch.zeros(3, dtype=torch.float64)  # acc sum, comp sum, images with GT edges

    def valid_mask(self, gt: Tensor) -> Tensor:
        valid = (gt > self.min_depth) & (gt <= self.cap)
        if self.eigen_crop:
            height, width = gt.shape[-2:]
            valid &= eigen_mask(height, width, device=gt.device)
        return valid

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        depth = batch["depth"]
        b = depth.shape[0]
        height, width = depth.shape[-2:]
        n = height * width
        p, g, x, y, z, f = self.workspace(6, b, n, depth.device).unbind(0)
        g.copy_(depth.reshape(b, n))  # float32 → float64 is exact
        p.copy_(pred.reshape(b, n))
        valid = self.valid_mask(g.view(b, height, width)).view(b, n)
        finite = torch.sub(p, p, out=y) == 0  # isfinite(p) without its temporaries: NaN − NaN, inf − inf are NaN
        # state on the device of the batch, masked rather than indexed: no host sync
        self._bad = self._bad.to(depth.device) + (valid & ~finite).sum(dtype=torch.int32)
        ok = valid & finite
        count = f.copy_(ok).sum(1)  # counts as float64 sums of 0/1: exact, and no int64 copy of the mask
        # pixels left out become p = g = 1: every error term is 0 there
        outside = ~ok
        p.clamp_(self.min_depth, self.cap).masked_fill_(outside, 1.0)
        g.masked_fill_(outside, 1.0)
        torch.div(p, g, out=x).log_()  # d = ln p − ln g
        torch.sub(p, g, out=y).abs_()  # |p − g|
        torch.div(y, g, out=z)  # |p − g| / g
        s_abs, s_sq, s_rel, s_sq_rel = y.sum(1), _dot(y, y), z.sum(1), _dot(y, z)
        s_d, s_d2 = x.sum(1), _dot(x, x)
        s_dabs = torch.abs(x, out=y).sum(1)
        # each image's centred Σ(d − mean d)² (SILog without cancellation); d is 0 where left out
        centred = torch.addcmul(x, f, (s_d / count.clamp(min=1))[:, None], value=-1, out=z)
        m2 = _dot(centred, centred)
        # δ: max(p, g) < 1.25^k · min(p, g), exact in float64 (module docstring); the pixels left
        # out (p = g = 1) are inside every δ and are taken off again
        lo, hi = torch.minimum(p, g, out=y), torch.maximum(p, g, out=z)
        left_out = n - count
        deltas = [torch.lt(hi, torch.mul(lo, t, out=x), out=f).sum(1) - left_out for t in _DELTA]
        self._images.append(torch.stack([count, s_abs, s_sq, s_rel, s_sq_rel, s_d, s_d2, s_dabs, *deltas, m2], 1))
        if self.boundaries:
            gt = depth.float().reshape(b, height, width)
            acc, comp = depth_boundary_errors(pred.float().reshape(gt.shape).clamp(self.min_depth, self.cap), gt,
                                              valid.view(b, height, width))
            has = ~torch.isnan(acc)
            self._dbe = self._dbe.to(depth.device) + torch.stack(
                [torch.where(has, acc, 0).double().sum(), torch.where(has, comp, 0).double().sum(),
                 has.sum().double()])

    def _all(self) -> Tensor | None:
        """Every image's row so far (N×12), or ``None`` before the first batch."""
        return torch.cat(self._images) if self._images else None

    def reduce(self, group: Group, device: torch.device) -> None:
        """Sums over processes, and every process's per-image rows in rank order."""
        super().reduce(group, device)
        mine = self._all()
        if mine is None:
            mine = torch.zeros((0, _COLUMNS), dtype=torch.float64, device=device)
        every = group.cat(mine.to(device))
        self._images = [every] if every.shape[0] else []

    def compute(self) -> dict[str, float]:
        bad = int(self._bad)
        if bad:
            raise BadPredictionError(
                f"depth predictions hold {bad} non-finite values (NaN or ±inf) at valid ground-truth pixels: a "
                f"model's predict() must return finite depths in metres. NaN usually means the model diverged "
                f"(check the training loss) or overflowed in fp16 (try train.precision bf16 or fp32)")
        table = self._all()
        if table is None:
            return {}
        counts = table[:, 0]
        total = counts.sum()
        if total == 0:
            return {}
        # pooled: the images' sums added; the centred term around the pooled mean (module docstring)
        seen = counts > 0
        image_mean = table[:, _SUM_D] / counts.clamp(min=1)
        between = torch.where(seen, counts * (image_mean - table[:, _SUM_D].sum() / total) ** 2, 0).sum()
        result = {k: float(v) for k, v in _finish(table.sum(0), table[:, -1].sum() + between).items()}
        result["mae_norm"] = result["mae"] / self.max_depth
        result["rmse_norm"] = result["rmse"] / self.max_depth
        # per image: images without a valid pixel are left out (their rows are NaN, masked here)
        per = _finish(table, table[:, -1])
        n_images = seen.sum()
        for k in _BASE:
            result[f"{k}_img"] = float(torch.where(seen, per[k], 0).sum() / n_images)
        acc, comp, n = self._dbe.tolist()
        if n:  # absent, not NaN, when no image had depth edges (JSON has no NaN)
            result["dbe_acc"] = acc / n
            result["dbe_comp"] = comp / n
        return result
