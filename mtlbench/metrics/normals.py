"""Surface-normal metrics: angular errors in degrees, pooled over the valid pixels of a split.

The NYUD-MT protocol (MTI-Net's ``evaluation/eval_normals.py``, from ASTMT): with θ the angle
between the predicted and the ground-truth normal of a valid pixel, over every valid pixel of the
split,

- ``mean`` = mean θ (MTI-Net's "mErr", the key metric and Δm ``mti``'s)
- ``median`` = median θ
- ``rmse`` = sqrt(mean θ²)
- ``within_11.25``, ``within_22.5``, ``within_30`` = fraction of pixels with θ < 11.25°, 22.5°, 30°
  (fractions in [0, 1] like every ratio here; tables print them as %)

**Valid pixels.** A ground-truth vector of norm < 0.5 (the datasets store 0 for "no normal") or
with a non-finite component is invalid. Predictions need not be unit length: θ is the angle
between the vectors, which does not depend on their lengths (the task's ``predict`` normalises
anyway). A zero predicted vector has no direction and gets θ = 90°, as in MTI-Net's evaluation
(it normalises with ``+ 1e-12``, so the dot product is 0).

**Computation.** θ = atan2(|p × g|, p · g) in float64, the same angle as the protocol's
acos(clamp(p̂ · ĝ, −1, 1)) but accurate near 0° and 180°, where acos loses half the digits
(identical vectors give 1e-6° instead of 0). Sums are float64 and counts int64, all summed over
processes; nothing is read back per batch.

**The median** needs every angle, which a stream cannot keep (2·10⁸ at 654 frames of 480×640). A
histogram of 0.001° bins over [0°, 180°] (int64 counts, summed over processes) keeps them to a
bin: the k-th smallest angle is placed inside its bin by linear interpolation over the bin's
count, and the median is the middle one (the mean of the two middle ones for an even count, as
``np.median``). The result is within one bin, 0.001°, of the exact median (within half a bin
when the bin holds a single angle; far closer in practice, when thousands share it). The other
keys need no histogram: exact counts and float64 sums.

**Bad predictions.** A prediction with a non-finite component at a valid pixel is counted, left
out of every sum, and :meth:`NormalsMetrics.compute` raises a ``ValueError`` naming how many.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlbench.errors import BadPredictionError
from mtlbench.metrics.base import Metric

THRESHOLDS = (11.25, 22.5, 30.0)  # degrees
BIN = 0.001  # histogram bin of the median, degrees
_BINS = round(180 / BIN)


def angular_error(pred: Tensor, gt: Tensor) -> Tensor:
    """Angle in degrees (float64) between the vectors along dim 1 of ``pred`` and ``gt``; 90° where
    ``pred`` is the zero vector. Per pixel, for error maps: the same angles
    :meth:`NormalsMetrics.update` computes with buffers."""
    p, g = pred.double(), gt.double()
    cross = torch.linalg.vector_norm(torch.linalg.cross(p, g, dim=1), dim=1)
    angle = torch.rad2deg(torch.atan2(cross, (p * g).sum(1)))
    return torch.where((p != 0).any(1), angle, 90.0)


def median_from_histogram(hist: Tensor, width: float = BIN) -> float:
    """The median of the values counted in ``hist`` (bin i holds [i·width, (i+1)·width)), each
    order statistic interpolated linearly inside its bin (module docstring). NaN when empty."""
    counts = hist.detach().cpu().long()
    total = int(counts.sum())
    if total == 0:
        return math.nan
    cum = counts.cumsum(0)

    def kth(k: int) -> float:  # the k-th smallest value, k = 1..total
        i = int(torch.searchsorted(cum, k))  # first bin with cum >= k
        before = int(cum[i] - counts[i])
        return (i + (k - before - 0.5) / int(counts[i])) * width

    if total % 2:
        return kth((total + 1) // 2)
    return (kth(total // 2) + kth(total // 2 + 1)) / 2


class NormalsMetrics(Metric):
    """Mean, median and RMSE of the angular error and the fractions within 11.25°, 22.5° and 30°,
    pooled over the valid pixels of a split (module docstring).

    ``pred`` and ``batch["normals"]`` are B×3×H×W (any float dtype); a ground-truth vector of
    norm < 0.5 or with a non-finite component marks an invalid pixel. A non-finite prediction at a
    valid pixel is an error :meth:`compute` raises.

    Example:
        >>> m = NormalsMetrics()
        >>> g = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2)
        >>> p = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).view(1, 3, 1, 2)
        >>> m.update(p, {"normals": g})
        >>> round(m.compute()["mean"], 6)  # 0° and 45°
        22.5
    """

    task = "normals"
    names = ("mean", "median", "rmse", *(f"within_{t:g}" for t in THRESHOLDS))
    summed = ("_sums", "_counts", "_hist")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums = torch.zeros(2, dtype=torch.float64)  # Σθ, Σθ²
        # valid pixels, those within each threshold, then bad predictions
        self._counts = torch.zeros(2 + len(THRESHOLDS), dtype=torch.int64)
        self._hist = torch.zeros(_BINS, dtype=torch.int64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        gt = batch["normals"]
        if gt.dim() != 4 or gt.shape[1] != 3 or pred.shape != gt.shape:
            raise ValueError(f"normals metrics expect B×3×H×W prediction and ground truth, got "
                             f"{tuple(pred.shape)} and {tuple(gt.shape)}")
        b, n, device = gt.shape[0], gt.shape[2] * gt.shape[3], gt.device
        ws = self.workspace(10, b, n, device)
        # components as B×N rows (strided channel reductions are slow); float32 → float64 is exact
        ws[0:3].copy_(pred.reshape(b, 3, n).transpose(0, 1))
        ws[3:6].copy_(gt.reshape(b, 3, n).transpose(0, 1))
        px, py, pz, gx, gy, gz, dot, u, v, w = ws.unbind(0)
        norm2 = torch.mul(gx, gx, out=dot).addcmul_(gy, gy).addcmul_(gz, gz)
        valid = (norm2 >= 0.25) & (norm2 < math.inf)  # |g| >= 0.5 and finite (NaN fails both)
        total = torch.add(px, py, out=u).add_(pz)
        finite = torch.sub(total, total, out=u) == 0  # every component finite: NaN and ±inf leave NaN
        ok = valid & finite
        # θ = atan2(|p × g|, p · g)
        torch.mul(px, gx, out=dot).addcmul_(py, gy).addcmul_(pz, gz)
        cross = torch.mul(py, gz, out=u).addcmul_(pz, gy, value=-1).square_()
        cross.addcmul_(torch.mul(pz, gx, out=v).addcmul_(px, gz, value=-1), v)
        cross.addcmul_(torch.mul(px, gy, out=w).addcmul_(py, gx, value=-1), w).sqrt_()
        no_direction = (cross == 0) & (dot == 0)  # with a valid g, only a zero prediction
        angle = torch.atan2(cross, dot, out=v).mul_(180 / math.pi).masked_fill_(no_direction, 90.0)
        angle.masked_fill_(~ok, 0.0)  # left out: θ = 0 and no count (it may be NaN there)
        # state on the device of the batch, masked rather than indexed: no host sync
        left_out = ok.numel() - ok.sum()
        within = [torch.lt(angle, t, out=w).sum() - left_out for t in THRESHOLDS]  # float64 sums of 0/1: exact
        self._sums = self._sums.to(device) + torch.stack([angle.sum(), torch.dot(angle.view(-1), angle.view(-1))])
        self._counts = self._counts.to(device) + torch.stack(
            [ok.numel() - left_out, *(c.long() for c in within), (valid & ~finite).sum()])
        # histogram of the median; left-out pixels go to an extra bin that is dropped. index_add_
        # rather than bincount, which reads its input's maximum back to the host on CUDA
        index = torch.mul(angle, 1 / BIN, out=w).long().clamp_(max=_BINS - 1).masked_fill_(~ok, _BINS).view(-1)
        hist = torch.zeros(_BINS + 1, dtype=torch.int64, device=device)
        hist.index_add_(0, index, torch.ones(1, dtype=torch.int64, device=device).expand(index.numel()))
        self._hist = self._hist.to(device) + hist[:_BINS]

    def compute(self) -> dict[str, float]:
        counts = self._counts.tolist()
        n, bad = counts[0], counts[-1]
        if bad:
            raise BadPredictionError(
                f"normals predictions hold {bad} pixels with a non-finite component (NaN or ±inf) at valid "
                f"ground-truth pixels: a model's predict() must return finite vectors (B×3×H×W). NaN usually "
                f"means the model diverged (check the training loss) or overflowed in fp16 (try train.precision "
                f"bf16 or fp32)")
        if n == 0:
            return {}
        total, squares = self._sums.tolist()
        result = {"mean": total / n, "median": median_from_histogram(self._hist), "rmse": math.sqrt(squares / n)}
        result.update({f"within_{t:g}": c / n for t, c in zip(THRESHOLDS, counts[1:-1])})
        return result
