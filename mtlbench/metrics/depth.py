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
  the seed paper reports (it evaluates depth normalised to [0, 1])
- ``dbe_acc``/``dbe_comp``: the iBims-1 depth-boundary errors in pixels, averaged over images
  whose ground truth has depth edges (see :mod:`mtlbench.metrics.boundary`)

Per-pixel terms and per-image sums are float32 (relative error ~1e-7, far below the printed
digits); sums over images are float64, so a split of any length accumulates without drift.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlbench.metrics.base import Metric
from mtlbench.metrics.boundary import depth_boundary_errors

# Eigen et al.'s evaluation crop of a 480×640 NYUv2 frame: rows 45:471, columns 41:601
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)

_BASE = ("mae", "rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
# per-pixel sums kept for each image: count, then the terms below
_TERMS = ("abs", "sq", "rel", "sq_rel", "dlog", "dlog_sq", "log10", "d1", "d2", "d3")


def eigen_mask(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """Eigen's crop as an H×W mask; scaled proportionally when the frame was resized from 480×640."""
    r0, r1, c0, c1 = EIGEN_CROP
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[round(r0 * height):round(r1 * height), round(c0 * width):round(c1 * width)] = True
    return mask


def _finish(s: Tensor) -> dict[str, Tensor]:
    """Metrics from per-pixel sums ``s`` (…×11: count then ``_TERMS``); any leading shape."""
    n = s[..., 0]
    mean = {t: s[..., i + 1] / n for i, t in enumerate(_TERMS)}
    return {
        "mae": mean["abs"],
        "rmse": mean["sq"].sqrt(),
        "abs_rel": mean["rel"],
        "sq_rel": mean["sq_rel"],
        "rmse_log": mean["dlog_sq"].sqrt(),
        "log10": mean["log10"],
        "silog": 100 * (mean["dlog_sq"] - mean["dlog"] ** 2).clamp(min=0).sqrt(),
        "delta1": mean["d1"],
        "delta2": mean["d2"],
        "delta3": mean["d3"],
    }


class DepthMetrics(Metric):
    """Depth metrics over the valid pixels of a split, pooled and per image (module docstring).

    A pixel is valid where ``min_depth < g <= cap`` (and inside Eigen's crop if asked);
    predictions are clipped to ``[min_depth, cap]``.

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
    summed = ("_pooled", "_per_image", "_dbe")

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
        self._pooled = torch.zeros(1 + len(_TERMS), dtype=torch.float64)
        self._per_image = torch.zeros(len(_BASE) + 1, dtype=torch.float64)  # sums, then the images seen
        self._dbe = torch.zeros(3, dtype=torch.float64)  # acc sum, comp sum, images with GT edges

    def valid_mask(self, gt: Tensor) -> Tensor:
        valid = (gt > self.min_depth) & (gt <= self.cap)
        if self.eigen_crop:
            height, width = gt.shape[-2:]
            valid &= eigen_mask(height, width, device=gt.device)
        return valid

    def _workspace(self, b: int, n: int, device: torch.device) -> Tensor:
        # one float32 buffer reused across batches: fresh large tensors per op cost more than the math
        ws = getattr(self, "_ws", None)
        if ws is None or ws.shape != (len(_TERMS) + 1, b, n) or ws.device != device:
            ws = self._ws = torch.empty(len(_TERMS) + 1, b, n, device=device)
        return ws

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        gt = batch["depth"].float()
        b = gt.shape[0]
        gt = gt.reshape(b, *gt.shape[-2:])
        valid = self.valid_mask(gt)
        n = valid[0].numel()
        g = gt.reshape(b, n)
        p = pred.float().reshape(b, n)
        v = valid.reshape(b, n)
        ws = self._workspace(b, n, gt.device)
        count, t_abs, t_sq, t_rel, t_sq_rel, t_dlog, t_dlog_sq, t_log10, d1, d2, d3 = ws.unbind(0)
        # masked pixels become p = g = 1, so every error term is 0 there; only the count and the δ
        # indicators need the mask
        invalid = ~v
        torch.clamp(p, self.min_depth, self.cap, out=t_sq_rel).masked_fill_(invalid, 1.0)  # p
        t_rel.copy_(g).masked_fill_(invalid, 1.0)  # g
        torch.sub(t_sq_rel, t_rel, out=t_abs)  # p − g
        torch.div(t_sq_rel, t_rel, out=t_dlog).log_()  # ln p − ln g
        t_rel.reciprocal_()  # 1 / g
        torch.mul(t_abs, t_abs, out=t_sq)
        t_abs.abs_()
        torch.mul(t_sq, t_rel, out=t_sq_rel)
        t_rel.mul_(t_abs)
        torch.mul(t_dlog, t_dlog, out=t_dlog_sq)
        torch.abs(t_dlog, out=t_log10)
        for k, d in zip((1, 2, 3), (d1, d2, d3)):  # max(p/g, g/p) < 1.25^k  <=>  |ln p − ln g| < k·ln 1.25
            d.copy_(t_log10 < k * math.log(1.25)).mul_(v)
        t_log10.mul_(1 / math.log(10))
        count.copy_(v)
        # per-image sums by one matrix product (float32 within an image, float64 across images)
        sums = (ws.view(-1, n) @ torch.ones(n, device=gt.device)).view(-1, b).T.double()  # B×11
        # state on the device of the batch, masked rather than indexed: no host sync
        self._pooled = self._pooled.to(sums.device) + sums.sum(0)
        seen = sums[:, 0] > 0
        per = _finish(sums)  # NaN rows of images without valid pixels are masked out
        self._per_image = self._per_image.to(sums.device) + torch.stack(
            [torch.where(seen, per[k], 0).sum() for k in _BASE] + [seen.sum().double()])
        if self.boundaries:
            acc, comp = depth_boundary_errors(pred.float().reshape(gt.shape).clamp(self.min_depth, self.cap), gt,
                                              valid)
            has = ~torch.isnan(acc)
            self._dbe = self._dbe.to(sums.device) + torch.stack(
                [torch.where(has, acc, 0).double().sum(), torch.where(has, comp, 0).double().sum(),
                 has.sum().double()])

    def compute(self) -> dict[str, float]:
        if self._pooled[0] == 0:
            return {}
        result = {k: float(v) for k, v in _finish(self._pooled).items()}
        result["mae_norm"] = result["mae"] / self.max_depth
        result["rmse_norm"] = result["rmse"] / self.max_depth
        for k, v in zip(_BASE, (self._per_image[:-1] / self._per_image[-1]).tolist()):
            result[f"{k}_img"] = v
        acc, comp, n = self._dbe.tolist()
        if n:  # absent, not NaN, when no image had depth edges (JSON has no NaN)
            result["dbe_acc"] = acc / n
            result["dbe_comp"] = comp / n
        return result
