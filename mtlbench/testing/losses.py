"""check_loss: the loss contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.registry import LOSSES, TASKS
from mtlbench.tasks import DatasetInfo, DepthTask, EdgeTask, NormalsTask, SegTask, Task
from mtlbench.tasks.base import CONTINUOUS, LABEL, VECTOR, Target
from mtlbench.testing.common import Report, _declared, _default_info, _named

# -- losses --------------------------------------------------------------------------------------------

# what each built-in task kind marks invalid in its target
_INVALID = {"depth": "depth 0", "seg": "the ignore label", "normals": "the zero vector"}


def _task_kind(task: Task) -> str:
    """Which of the built-in task kinds ``task`` is ("" for another)."""

    kinds = (("depth", DepthTask), ("seg", SegTask), ("edge", EdgeTask), ("normals", NormalsTask))
    return next((kind for kind, cls in kinds if isinstance(task, cls)), "")


def _synthetic_batch(info: DatasetInfo, b: int, size: tuple[int, int], gen: torch.Generator) -> dict[str, Tensor]:
    """A batch as the pipeline gives it to losses: normalised image B×3×H×W, depth B×1×H×W in
    metres (a smooth ramp inside (0, max_depth]), seg B×H×W (classes constant on 4×4 tiles), edge
    B×1×H×W in {0, 1}, unit normals B×3×H×W, index. Depth, seg and normals are invalid (0, the
    ignore label, the zero vector) in a block away from the border, so that a filter reading
    across it would be caught, and at scattered pixels."""
    h, w = size

    def holes(rows: slice, cols: slice) -> Tensor:
        mask = torch.rand(b, 1, h, w, generator=gen) < 0.05
        mask[:, :, rows, cols] = True
        return mask

    ramp = torch.rand(b, 1, 1, 1, generator=gen)
    across = ramp * torch.linspace(0, 1, h)[:, None] + (1 - ramp) * torch.linspace(0, 1, w)[None, :]
    depth = info.max_depth * (0.2 + 0.6 * across + 0.05 * torch.rand(b, 1, h, w, generator=gen))
    depth = depth.masked_fill(holes(slice(2, 2 + h // 3), slice(2, 2 + w // 3)), 0.0)
    tiles = torch.randint(0, info.num_classes, (b, 1, -(-h // 4), -(-w // 4)), generator=gen)
    seg = tiles.repeat_interleave(4, 2).repeat_interleave(4, 3)[:, :, :h, :w]
    seg = seg.masked_fill(holes(slice(h // 2, h - 1), slice(w // 2, w // 2 + 3)), info.ignore_index)[:, 0]
    normals = F.normalize(torch.randn(b, 3, h, w, generator=gen) + torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1),
                          dim=1)
    normals = normals.masked_fill(holes(slice(1, h // 2), slice(w - 4, w - 1)), 0.0)
    return {"image": torch.randn(b, 3, h, w, generator=gen), "depth": depth, "seg": seg,
            "edge": (torch.rand(b, 1, h, w, generator=gen) < 0.2).float(), "normals": normals,
            "index": torch.arange(1, b + 1)}


def _invalid_pixels(kind: str, batch: Mapping[str, Tensor], info: DatasetInfo) -> Tensor | None:
    """B×1×H×W: where the target of a ``kind`` task marks the pixel invalid (None: it marks none)."""
    if kind == "depth":
        return batch["depth"] == 0
    if kind == "seg":
        return (batch["seg"] == info.ignore_index)[:, None]
    if kind == "normals":
        return batch["normals"].abs().sum(1, keepdim=True) == 0
    return None


def _drawn_target(spec: Task, info: DatasetInfo, b: int, size: tuple[int, int], gen: torch.Generator) -> Tensor:
    """A target, as batches hold it, for a task of a kind the kit does not know: drawn as
    ``info.targets`` declares its key, or else as its head suggests (classes: labels; boundary
    maps: {0, 1}; dense maps: values in [0, 1], one per head channel)."""

    target = info.targets.get(spec.target_key) or (
        Target(LABEL) if spec.head == "classes" else Target(CONTINUOUS, spec.out_channels))
    h, w = size
    shape = (b, h, w) if target.channels == 1 else (b, h, w, target.channels)
    if target.kind == LABEL:
        stored = torch.randint(0, info.num_classes, shape, generator=gen)
    elif target.kind == VECTOR:
        stored = F.normalize(torch.randn(shape, generator=gen), dim=-1)
    elif spec.head == "boundary":
        stored = (torch.rand(shape, generator=gen) < 0.2).float()
    else:
        stored = torch.rand(shape, generator=gen)
    return target.to_batch(stored)


def _perfect(kind: str, batch: Mapping[str, Tensor], info: DatasetInfo, channels: int) -> Tensor:
    """The raw head output a ``kind`` task turns into its target exactly (confident logits for
    the classification tasks)."""
    if kind == "depth":
        return batch["depth"] / info.max_depth
    if kind == "seg":
        return 10.0 * F.one_hot(batch["seg"].clamp(0, channels - 1), channels).permute(0, 3, 1, 2).float() - 5.0
    if kind == "edge":
        return 10.0 * (2 * batch["edge"] - 1)
    up = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    return torch.where(batch["normals"].abs().sum(1, keepdim=True) > 0, batch["normals"], up)


def check_loss(loss: str | Callable[..., nn.Module], task: str | None = None, info: DatasetInfo | None = None,
               size: tuple[int, int] = (12, 16), **options: Any) -> Report:
    """Check a loss (a registered name or its factory, ``factory(info, **options)``) for ``task``
    (default: the task its registration names) against the contract of ``docs/plugins.md``, on a
    batch built from the task's definition (``info`` default: 5 classes, 10 m, normals):

    - ``forward(prediction, batch)`` is a finite float32 scalar for a float32 prediction, and a
      finite scalar for a bf16 prediction under bf16 autocast;
    - the gradient reaches the prediction (finite, not all zero);
    - one module called twice, and two modules built from one seed, give the same value;
    - pixels the task marks invalid (depth 0, the seg ignore label ``info.ignore_index``, the zero
      normal) neither change the loss when the prediction changes there alone nor receive gradient
      (edge targets mark none: reported);
    - it leaves the batch as it was (no target edited in place);
    - a perfect prediction scores no more than a random one, for the four built-in task kinds:
      depth (the target over ``max_depth``), seg and edge (logits ±5 and ±10 on the target),
      normals (the target);
    - on a batch whose every pixel is invalid (all depth 0, all ignored, all zero normals) the loss
      and its gradient are finite.

    A loss for a task of another kind (a plugin's task) is checked for the first three promises
    only, on a target drawn at random as ``info.targets`` declares the task's target key (or, where
    it declares none, as the task's head suggests); the other two are noted as not checked.
    """
    name, factory = _named(LOSSES, loss, "loss")
    task = task or _declared(LOSSES, loss, "task")
    if not task:
        raise ValueError(f"{name}: name the task the loss is for, e.g. check_loss({name!r}, 'depth')")
    info = info or _default_info()
    spec = TASKS.build(task, info)
    kind = _task_kind(spec)
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    batch = _synthetic_batch(info, b, size, gen)
    if not kind and spec.target_key not in batch:
        batch[spec.target_key] = _drawn_target(spec, info, b, size, gen)
    pred = torch.randn(b, spec.out_channels, h, w, generator=gen)
    pristine = {k: v.clone() for k, v in batch.items()}

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return factory(info, **options)

    module = build(0)
    assert isinstance(module, nn.Module), f"{name}: the factory returned {type(module).__name__}, not an nn.Module"
    with torch.no_grad():
        value = module(pred, batch)
    assert isinstance(value, Tensor) and value.dim() == 0, \
        f"{name}: forward returned {tuple(value.shape) if isinstance(value, Tensor) else type(value)}, not a scalar"
    assert value.dtype == torch.float32 and torch.isfinite(value), \
        f"{name}: not a finite float32 scalar for a float32 prediction: {value.item()} ({value.dtype})"
    report.ok("finite float32 scalar")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(pred.bfloat16(), batch)
    assert isinstance(low, Tensor) and low.dim() == 0 and low.is_floating_point() and torch.isfinite(low.float()), \
        f"{name}: not a finite scalar from a bf16 prediction under bf16 autocast: {low}"
    report.ok("finite scalar from a bf16 prediction")

    leaf = pred.clone().requires_grad_()
    differentiable = module(leaf, batch)
    assert isinstance(differentiable, Tensor) and differentiable.requires_grad, \
        f"{name}: no gradient reaches the prediction (the loss is not in its graph)"
    differentiable.backward()
    grad = leaf.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, \
        f"{name}: no gradient reaches the prediction"
    report.ok("gradient reaches the prediction")

    with torch.no_grad():
        again, twin = module(pred, batch), build(0)(pred, batch)
    torch.testing.assert_close(again, value, msg=lambda m: f"{name}: not deterministic: called twice: {m}")
    torch.testing.assert_close(twin, value, msg=lambda m: f"{name}: not deterministic under a seed: {m}")
    report.ok("deterministic under a seed")
    edited = [k for k, v in batch.items() if not torch.equal(v, pristine[k])]
    assert not edited, f"{name}: forward edits the batch in place ({', '.join(edited)}): it must read its " \
                       f"targets and never write them (other tasks' losses and the metrics read them after it)"
    report.ok("the batch left as it was")

    if not kind:  # what its target marks invalid and what a perfect prediction is, the kit cannot know
        unknown = f"not checked: {task} is a {type(spec).__name__}, not one of the built-in depth, seg, edge " \
                  f"and normals tasks (its target {spec.target_key!r} drawn at random)"
        report.notes["invalid pixels"] = report.notes["perfect prediction"] = unknown
        report.notes["values"] = f"random prediction {float(value):.4g}"
        return report

    invalid = _invalid_pixels(kind, batch, info)
    if invalid is None:
        report.notes["invalid pixels"] = f"none: {task} targets mark no pixel invalid"
    else:
        where = invalid.expand_as(pred)
        moved = torch.where(where, pred + 3 * torch.randn(pred.shape, generator=gen), pred)
        with torch.no_grad():
            changed = module(moved, batch)
        torch.testing.assert_close(changed, value, rtol=1e-5, atol=1e-6, msg=lambda m: (
            f"{name}: the loss changes where the {task} target marks pixels invalid ({_INVALID[kind]}): {m}"))
        assert grad[where].abs().sum() == 0, \
            f"{name}: the prediction receives gradient where the {task} target marks pixels invalid ({_INVALID[kind]})"
        report.ok("invalid pixels ignored")
        report.notes["invalid pixels"] = f"{int(invalid.sum())} of {invalid.numel()} ({_INVALID[kind]})"

    with torch.no_grad():
        best = module(_perfect(kind, batch, info, spec.out_channels), batch)
    assert float(best) <= float(value), \
        f"{name}: a perfect {task} prediction scores {float(best):.4g}, more than a random one ({float(value):.4g})"
    report.ok("a perfect prediction scores no more than a random one")
    report.notes["values"] = f"random prediction {float(value):.4g}, perfect {float(best):.4g}"

    if invalid is not None:  # a crop of holes or unlabelled pixels: no valid pixel in the whole batch
        empty = _all_invalid(kind, batch, info)
        leaf = pred.clone().requires_grad_()
        nothing = module(leaf, empty)
        nothing.backward()
        assert torch.isfinite(nothing) and leaf.grad is not None and torch.isfinite(leaf.grad).all(), \
            f"{name}: not finite on a batch with no valid {task} pixel ({float(nothing.detach())}): a mean over " \
            f"no pixels must not divide by zero"
        report.ok("finite on a batch with no valid pixel")
    return report


def _all_invalid(kind: str, batch: Mapping[str, Tensor], info: DatasetInfo) -> dict[str, Tensor]:
    """``batch`` with every pixel of a ``kind`` target marked invalid."""
    out = dict(batch)
    if kind == "depth":
        out["depth"] = torch.zeros_like(batch["depth"])
    elif kind == "seg":
        out["seg"] = torch.full_like(batch["seg"], info.ignore_index)
    elif kind == "normals":
        out["normals"] = torch.zeros_like(batch["normals"])
    return out
