"""The contract test kit: checks a plugin runs from its own pytest in one line.

    from mtlbench.testing import check_interaction

    def test_my_guidance_keeps_the_contract():
        check_interaction("my_guidance", identity_at_init=True)

One check per extension point, each taking a registered name or the factory itself:
:func:`check_interaction`, :func:`check_loss`, :func:`check_weighting`, :func:`check_model` and
:func:`check_dataset`. Each raises ``AssertionError`` naming the broken promise and returns a
:class:`Report` of what it checked and what it could only report (``torch.compile``, host syncs
off a GPU). Part of the public API (:mod:`mtlbench.api`, version 2).
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.models.base import AUX, SHARED, MultiTaskModel, Outputs
from mtlbench.registry import DATASETS, INTERACTIONS, LOSSES, MODELS, TASKS, WEIGHTINGS, Registry

if TYPE_CHECKING:
    from mtlbench.tasks import DatasetInfo, Task
    from mtlbench.weighting.base import Weighting


@dataclass
class Report:
    """What a check verified (``passed``) and what it only observed (``notes``)."""

    name: str
    passed: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def ok(self, what: str) -> None:
        self.passed.append(what)


# -- shared by the checks ----------------------------------------------------------------------

def _named(registry: Registry[Any], obj: str | Callable[..., Any], default: str) -> tuple[str, Callable[..., Any]]:
    """(name, factory) of a registered name (its options checked and completed by the registry)
    or of a factory given as it is."""
    if isinstance(obj, str):
        registry.entry(obj)  # an unknown name: one error with the close matches
        return obj, lambda *args, **o: registry.build(obj, *args, **o)
    return getattr(obj, "__name__", default), obj


def _declared(registry: Registry[Any], obj: str | Callable[..., Any], key: str) -> Any:
    """What a registered name declares under ``key`` in its registration (None for a factory)."""
    return registry.entry(obj).meta.get(key) if isinstance(obj, str) else None


def _says(prefix: str) -> Callable[[str], str]:
    """An ``assert_close`` message: ``prefix`` and what differs."""
    return lambda m: f"{prefix}: {m}"


def _nonzero(grad: Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


def _saved(module: nn.Module) -> dict[str, Any]:
    """``module``'s state dict through ``torch.save``, read back as checkpoints are (weights only)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def _compile_note(module: nn.Module, *inputs: Tensor) -> str:
    """Whether torch.compile traces ``module`` in one graph (the eager backend: no compiler needed)."""
    try:
        import torch._dynamo as dynamo

        explained = dynamo.explain(module)(*inputs)
        breaks = explained.graph_break_count
        return "one graph" if breaks == 0 else f"{breaks} graph break(s): {explained.break_reasons[0].reason}"
    except Exception as exc:  # reported, not required
        return f"not traceable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _host_sync_note(module: nn.Module, *inputs: Tensor) -> str:
    """Whether ``module``'s forward synchronises with the host (CUDA's sync debug mode; GPU only)."""
    if not torch.cuda.is_available():
        return "not checked (no GPU)"
    gpu = copy.deepcopy(module).cuda()
    try:
        torch.cuda.set_sync_debug_mode("error")
        gpu(*(x.cuda() for x in inputs))
        return "none in forward (CUDA)"
    except RuntimeError as exc:
        return f"forward syncs with the host: {str(exc).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def check_interaction(interaction: str | Callable[..., nn.Module], channels: int = 16, size: tuple[int, int] = (8, 12),
                      identity_at_init: bool | None = None, **options: Any) -> Report:
    """Check an interaction (a registered name or its factory) against the contract of
    ``docs/plugins.md``:

    - ``forward(target, source)`` returns the target's shape, finite, float32 in float32 and finite
      under bf16 autocast;
    - with ``identity_at_init`` (default: what a registered name declares, ``identity_at_init=True``
      in its registration), it returns ``target`` itself at initialisation;
    - gradients reach the target, the guide and every parameter (the parameters perturbed first,
      so that a zero-initialised gate does not hide a broken path);
    - a state dict round trip into a module built from another seed gives the same outputs;
    - two modules built from one seed give the same outputs;
    - ``attention_maps(target, source)``, where defined, is B×heads×positions×keys with rows
      summing to one;
    - reported, not required: host syncs in ``forward`` (checked on a GPU only) and whether
      ``torch.compile`` traces it in one graph.
    """
    name, factory = _named(INTERACTIONS, interaction, "interaction")
    if identity_at_init is None:
        identity_at_init = bool(_declared(INTERACTIONS, interaction, "identity_at_init"))
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    target, source = torch.randn(b, channels, h, w, generator=gen), torch.randn(b, channels, h, w, generator=gen)

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return factory(channels, **options)

    module = build(0).eval()
    assert isinstance(module, nn.Module), f"{name}: the factory returned {type(module).__name__}, not an nn.Module"
    with torch.no_grad():
        out = module(target, source)
    assert isinstance(out, Tensor) and out.shape == target.shape, \
        f"{name}: forward returned {getattr(out, 'shape', type(out))}, not the target's shape {tuple(target.shape)}"
    assert out.dtype == torch.float32 and torch.isfinite(out).all(), f"{name}: float32 output not finite float32"
    report.ok("shape and dtype (float32)")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(target, source)
    assert low.shape == target.shape and torch.isfinite(low.float()).all(), f"{name}: bf16 autocast output not finite"
    report.ok("bf16 autocast")
    if identity_at_init:
        torch.testing.assert_close(out, target, msg=lambda m: f"{name}: not the identity at initialisation: {m}")
        report.ok("identity at initialisation")

    trained = copy.deepcopy(module).train()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    t, s = target.clone().requires_grad_(), source.clone().requires_grad_()
    trained(t, s).square().mean().backward()
    for what, grad in (("target", t.grad), ("guide", s.grad)):
        assert grad is not None and grad.abs().sum() > 0, f"{name}: no gradient reaches the {what}"
    dead = [n for n, p in trained.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"{name}: parameters without gradient: {', '.join(dead)}"
    report.ok("gradients reach target, guide and every parameter")

    other = build(1).eval()
    other.load_state_dict(_saved(module))
    with torch.no_grad():
        torch.testing.assert_close(other(target, source), out, msg=lambda m: f"{name}: state dict round trip: {m}")
    report.ok("state dict round trip")
    with torch.no_grad():
        twin = build(0).eval()(target, source)
    torch.testing.assert_close(twin, out, msg=lambda m: f"{name}: not deterministic under a seed: {m}")
    report.ok("deterministic under a seed")

    maps_fn = getattr(module, "attention_maps", None)
    if callable(maps_fn):
        with torch.no_grad():
            maps = maps_fn(target, source)
        assert maps.dim() == 4 and maps.shape[0] == b and maps.shape[2] == h * w, \
            f"{name}: attention_maps gave {tuple(maps.shape)}, not B×heads×{h * w}×keys"
        torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)),
                                   msg=lambda m: f"{name}: attention rows do not sum to one: {m}")
        report.ok("attention maps")

    report.notes["host syncs"] = _host_sync_note(module, target, source)
    report.notes["torch.compile"] = _compile_note(module, target, source)
    return report


def _default_info() -> DatasetInfo:
    from mtlbench.tasks import DatasetInfo
    from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS

    return DatasetInfo(num_classes=5, max_depth=10.0, targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})


# -- losses --------------------------------------------------------------------------------------------

# what each built-in task kind marks invalid in its target
_INVALID = {"depth": "depth 0", "seg": "the ignore label", "normals": "the zero vector"}


def _task_kind(task: Task) -> str:
    """Which of the built-in task kinds ``task`` is ("" for another)."""
    from mtlbench.tasks import DepthTask, EdgeTask, NormalsTask, SegTask

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
    from mtlbench.tasks.base import CONTINUOUS, LABEL, VECTOR, Target

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
    - a perfect prediction scores no more than a random one, for the four built-in task kinds:
      depth (the target over ``max_depth``), seg and edge (logits ±5 and ±10 on the target),
      normals (the target).

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
    return report


# -- weightings -----------------------------------------------------------------------------------------

_BLOCK = 3  # shared features per task in the tiny model


class _TinyShared(MultiTaskModel):
    """x (B×4) → a shared Linear + tanh (the backbone) → per task, a linear head on its own block of
    the shared features: the tasks' gradients of the shared parameters (and representation) are
    orthogonal, so that every method that combines the tasks gives each of them a part of the step."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.backbone = nn.Sequential(nn.Linear(4, _BLOCK * len(self.task_names)), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(_BLOCK, 1) for t in self.task_names})

    def encode(self, x: Tensor) -> list[Tensor]:
        return [self.backbone(x)]

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        parts = shared[0].split(_BLOCK, 1)
        return {t: self.heads[t](part)[:, 0] for t, part in zip(self.task_names, parts)}


def _tiny_losses(out: Outputs, y: Tensor, tasks: Sequence[str]) -> dict[str, Tensor]:
    return {t: (out[t] - y[:, i]).square().mean() for i, t in enumerate(tasks)}


@dataclass
class _Step:
    """What one step of a weighting left: the total it returned, every gradient, its weights."""

    total: Tensor
    grads: dict[str, Tensor]
    applied: Tensor | None


def _weighting_steps(w: Weighting, model: _TinyShared, x: Tensor, y: Tensor, steps: range,
                     scale: Tensor | None = None,
                     check: Callable[[int, _Step, list[list[Tensor]]], None] | None = None) -> list[_Step]:
    """Steps as the trainer takes them: backward, an SGD step of the model's and the weighting's
    parameters, ``after_step`` where it asks for it, ``end_epoch`` every two steps. ``check`` sees
    each step with each task's gradients of the model's parameters (zeros where it has none)."""
    named = [(f"model.{n}", p) for n, p in model.named_parameters()] + [(n, p) for n, p in w.named_parameters()]
    opt = torch.optim.SGD([p for _, p in named], lr=0.05)
    w.train()
    tasks = model.task_names
    sums = torch.zeros(len(tasks))
    records = []
    for i in steps:
        torch.manual_seed(1000 + i)  # methods that draw do so from the global generator, seeded by the trainer
        opt.zero_grad(set_to_none=True)
        out = model(x)
        losses = _tiny_losses(out, y, tasks)
        rows = [[g if g is not None else torch.zeros_like(p) for g, p in zip(
            torch.autograd.grad(losses[t], list(model.parameters()), retain_graph=True, allow_unused=True),
            model.parameters())] for t in tasks] if check is not None else []
        total = w.backward(losses, model, out[SHARED], scale=scale) if scale is not None \
            else w.backward(losses, model, out[SHARED])
        step = _Step(total.detach().clone() if isinstance(total, Tensor) else total,
                     {n: p.grad.detach().clone() for n, p in named if p.grad is not None},
                     None if w.applied is None else w.applied.detach().clone())
        if check is not None:
            check(i, step, rows)
        records.append(step)
        opt.step()
        if w.updates_after_step:
            def recompute() -> dict[str, Tensor]:
                with torch.no_grad():
                    return _tiny_losses(model(x), y, tasks)
            w.after_step(recompute)
        sums += torch.stack([v.detach() for v in losses.values()])
        if i % 2 == 0:
            w.end_epoch(sums / 2)
            sums.zero_()
    return records


def _same_steps(got: Sequence[_Step], want: Sequence[_Step], what: str, scale: float = 1.0) -> None:
    for k, (a, b) in enumerate(zip(got, want), 1):
        torch.testing.assert_close(a.total, b.total, msg=_says(f"{what}: the total of step {k}"))
        assert set(a.grads) == set(b.grads), f"{what}: step {k} writes gradients of other parameters"
        for n in a.grads:
            torch.testing.assert_close(a.grads[n] / scale, b.grads[n], rtol=1e-4, atol=1e-6,
                                       msg=_says(f"{what}: the gradient of {n} at step {k}"))
        if a.applied is not None or b.applied is not None:
            torch.testing.assert_close(a.applied, b.applied,
                                       msg=_says(f"{what}: the weights of step {k}"))


def check_weighting(weighting: str | Callable[..., nn.Module], tasks: Sequence[str] = ("depth", "seg", "edge"),
                    **options: Any) -> Report:
    """Check a weighting (a registered name or its factory, ``factory(tasks, **options)``) against
    the contract of :mod:`mtlbench.weighting.base`, on a tiny model whose tasks each read their own
    block of the shared features (their gradients of the shared layer are orthogonal), trained six
    steps as the trainer trains (backward, an optimiser step, ``after_step`` where it asks for it,
    ``end_epoch`` every two steps):

    - the factory gives a :class:`~mtlbench.weighting.base.Weighting` whose ``level`` is "loss" or
      "gradient", the one its registration declares;
    - every step returns a finite scalar total, writes finite gradients and leaves in ``applied``
      ``None`` or one finite weight per task;
    - every step depends on every task: each task's head and each task's block of the shared layer
      receive gradient;
    - what ``applied`` promises: a loss weighting's gradients are those of Σ_t applied_t·L_t, a
      Gramian weighting's shared gradient (through the parameters) is Σ_t applied_t·g_t;
    - a state dict round trip (through ``torch.save``, read weights-only as checkpoints are) after
      two epochs, into a weighting built from another seed, continues with the same gradients;
    - two weightings built from one seed, trained alike, write the same gradients;
    - under fp16's loss scale s (``backward(..., scale=s)``) it writes s times the gradients and
      returns the same total.
    """
    from mtlbench.weighting.base import GramianWeighting, LossWeighting, Weighting

    name, factory = _named(WEIGHTINGS, weighting, "weighting")
    tasks = list(tasks)
    report = Report(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=gen)
    y = torch.randn(16, len(tasks), generator=gen) * torch.tensor([(1.0, 4.0, 0.25)[i % 3] for i in range(len(tasks))])

    def build(seed: int) -> Weighting:
        torch.manual_seed(seed)
        return factory(list(tasks), **options)

    def model() -> _TinyShared:
        torch.manual_seed(0)
        return _TinyShared(tasks).train()

    w = build(0)
    assert isinstance(w, Weighting), \
        f"{name}: the factory returned {type(w).__name__}, not a Weighting (LossWeighting, GradientWeighting, …)"
    declared = _declared(WEIGHTINGS, weighting, "level")
    assert w.level in ("loss", "gradient") and declared in (None, w.level), \
        f"{name}: its level is {w.level!r}, not 'loss' or 'gradient' as its registration declares ({declared!r})"
    report.ok(f"a {w.level}-level Weighting")

    net = model()
    shared = {id(p) for p in net.shared_parameters()}
    identity = ""
    if isinstance(w, LossWeighting):
        identity = "gradients of Σ_t applied_t·L_t"
    elif isinstance(w, GramianWeighting) and getattr(w, "through", "parameters") == "parameters":
        identity = "shared gradient Σ_t applied_t·g_t"

    def check(i: int, step: _Step, rows: list[list[Tensor]]) -> None:
        total = step.total
        assert isinstance(total, Tensor) and total.dim() == 0 and torch.isfinite(total), \
            f"{name}: step {i} returned the total {total!r}, not a finite scalar"
        bad = [n for n, g in step.grads.items() if not torch.isfinite(g).all()]
        assert not bad, f"{name}: step {i} wrote non-finite gradients into {', '.join(bad)}"
        applied = step.applied
        assert applied is None or (applied.shape == (len(tasks),) and torch.isfinite(applied).all()), \
            f"{name}: step {i} left applied = {applied}, not None or {len(tasks)} finite weights"
        for k, t in enumerate(tasks):
            assert _nonzero(step.grads.get(f"model.heads.{t}.weight")), \
                f"{name}: step {i} ignores task {t}: its head receives no gradient"
            block = step.grads.get("model.backbone.0.weight")
            assert block is not None and _nonzero(block[k * _BLOCK:(k + 1) * _BLOCK]), \
                f"{name}: step {i} ignores task {t}: the shared layer's gradient has nothing of it"
        if identity and applied is not None:
            for (n, p), *per_task in zip(net.named_parameters(), *rows):
                if isinstance(w, GramianWeighting) and id(p) not in shared:
                    continue
                want = sum((a * g for a, g in zip(applied, per_task)), torch.zeros_like(p))
                got = step.grads.get(f"model.{n}", torch.zeros_like(p))
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=_says(
                    f"{name}: step {i} wrote into {n} other than the {identity} (applied {applied.tolist()})"))

    first = _weighting_steps(w, net, x, y, range(1, 5), check=check)
    state, snapshot = _saved(w), copy.deepcopy(net)
    rest = _weighting_steps(w, net, x, y, range(5, 7), check=check)
    report.ok("finite total, gradients and weights")
    report.ok("every task reaches the step")
    if identity:
        report.ok(f"applied weights give the {identity}")

    other = build(1)
    other.load_state_dict(state)
    _same_steps(_weighting_steps(other, snapshot, x, y, range(5, 7)), rest,
                f"{name}: resumed from its state dict after two epochs, it continues otherwise")
    report.ok("state dict round trip")
    report.notes["state"] = ", ".join(state) if state else "none (stateless)"

    _same_steps(_weighting_steps(build(0), model(), x, y, range(1, 7)), first + rest,
                f"{name}: not deterministic under a seed")
    report.ok("deterministic under a seed")

    # the same first step from a fresh build (deterministic, as just checked), under a loss scale
    scaled = _weighting_steps(build(0), model(), x, y, range(1, 2), scale=torch.tensor(8.0))
    _same_steps(scaled, first[:1], f"{name}: under the loss scale 8", scale=8.0)
    report.ok("loss scale")
    return report


# -- models ------------------------------------------------------------------------------------------

def _param_names(model: nn.Module, params: Sequence[nn.Parameter], limit: int = 4) -> str:
    names = {id(p): n for n, p in model.named_parameters()}
    listed = [names.get(id(p), "?") for p in params]
    return ", ".join(listed[:limit]) + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def check_model(model: str | Callable[..., nn.Module], tasks: Sequence[str] = ("depth", "seg", "edge"),
                backbone: str = "test_resnet", width: int = 16, size: tuple[int, int] = (64, 64),
                info: DatasetInfo | None = None, compile_note: bool = True, **options: Any) -> Report:
    """Check a model (a registered name or its factory, ``factory(tasks, backbone, **options)``)
    against the contract of :mod:`mtlbench.models.base`, built on ``backbone`` (``width`` channels;
    default timm's tiny test ResNet) for ``tasks`` (``info`` default: 5 classes, normals):

    - the factory gives a :class:`~mtlbench.models.base.MultiTaskModel` of the tasks asked for;
    - in evaluation, the outputs are the tasks' alone, ``out[task]`` B×C×H×W at the input size (C
      the task's channels), finite float32; finite under bf16 autocast;
    - a state dict round trip into a model built from another seed gives the same outputs, and
      two models built from one seed agree;
    - every task has parameters of its own (``task_parameters``), none of them shared
      (``shared_parameters``, not empty);
    - in training, the same task outputs, and beside them only ``AUX`` (a list of
      ``{task: B×C×h×w}``) and ``SHARED`` (a list of tensors);
    - the maps :func:`~mtlbench.models.base.capture_attention` records are finite and
      non-negative, batch first; B×heads×queries×keys maps have rows summing to one;
    - every trainable parameter is reached by some task's loss, and every task's loss (its ``AUX``
      outputs included, as the trainer adds them) reaches every parameter of its own branch and
      some shared parameter (the parameters perturbed first, so that a zero-initialised gate does
      not hide a broken path); a part of the shared encoder a task's decoder does not read (a skip
      only depth uses) has a zero gradient from that task, as ``shared_parameters`` documents;
    - reported, not required: host syncs in ``forward`` (checked on a GPU only) and, unless
      ``compile_note=False`` (seconds on a CPU), whether ``torch.compile`` traces it in one graph.
    """
    from mtlbench.models.backbones import build_backbone
    from mtlbench.models.base import capture_attention
    from mtlbench.tasks import build_tasks

    name, factory = _named(MODELS, model, "model")
    info = info or _default_info()
    specs = build_tasks(tuple(tasks), info)
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, h, w, generator=gen)

    def build(seed: int) -> MultiTaskModel:
        torch.manual_seed(seed)
        return factory(specs, build_backbone(backbone, width=width), **options)

    def shapes(out: Mapping[str, Any], mode: str) -> None:
        for t, spec in specs.items():
            y = out.get(t)
            want = (b, spec.out_channels, h, w)
            got = tuple(y.shape) if isinstance(y, Tensor) else y
            assert isinstance(y, Tensor) and tuple(y.shape) == want, \
                f"{name}: out[{t!r}] in {mode} is {got!r}, not B×C×H×W at the input size {want}"
            assert y.dtype == torch.float32 and torch.isfinite(y).all(), \
                f"{name}: out[{t!r}] in {mode} is not finite float32 ({y.dtype})"

    net = build(0).eval()
    assert isinstance(net, MultiTaskModel), f"{name}: the factory returned {type(net).__name__}, not a MultiTaskModel"
    assert list(net.task_names) == list(tasks), \
        f"{name}: task_names {net.task_names}, not the tasks asked for {list(tasks)}"
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, dict) and set(out) == set(tasks), \
        f"{name}: in evaluation it returns {sorted(out) if isinstance(out, dict) else type(out)}, not the tasks " \
        f"{sorted(tasks)} alone (AUX and SHARED only in training)"
    shapes(out, "evaluation")
    report.ok("evaluation outputs")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    for t in tasks:
        assert low[t].shape == out[t].shape and torch.isfinite(low[t].float()).all(), \
            f"{name}: out[{t!r}] not finite under bf16 autocast"
    report.ok("bf16 autocast")

    other = build(1).eval()
    other.load_state_dict(_saved(net))
    with torch.no_grad():
        again, twin = other(x), build(0).eval()(x)
    for t in tasks:
        torch.testing.assert_close(again[t], out[t], msg=_says(f"{name}: state dict round trip, {t}"))
        torch.testing.assert_close(twin[t], out[t],
                                   msg=_says(f"{name}: not deterministic under a seed, {t}"))
    report.ok("state dict round trip")
    report.ok("deterministic under a seed")

    shared = [p for p in net.shared_parameters() if p.requires_grad]
    assert shared, f"{name}: shared_parameters() is empty: gradient-level weightings have nothing to combine"
    ids = {id(p) for p in shared}
    for t in tasks:
        own = [p for p in net.task_parameters(t) if p.requires_grad]
        assert own, f"{name}: task {t} has no parameters of its own (task_parameters: a ModuleDict keyed by task)"
        both = [p for p in own if id(p) in ids]
        assert not both, f"{name}: task {t}'s parameters are also shared: {_param_names(net, both)}"
    report.ok("shared and task parameters")

    trained = copy.deepcopy(net).train()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    out = trained(x)
    extra = set(out) - set(tasks) - {AUX, SHARED}
    assert set(tasks) <= set(out) and not extra, \
        f"{name}: in training it returns {sorted(out)}: the tasks {sorted(tasks)}, and beside them only " \
        f"{AUX!r} and {SHARED!r}"
    shapes(out, "training")
    assert isinstance(out.get(AUX, []), (list, tuple)) and all(
        isinstance(e, dict) and set(e) <= set(tasks) and all(
            isinstance(y, Tensor) and y.dim() == 4 and y.shape[:2] == out[t].shape[:2] for t, y in e.items())
        for e in out.get(AUX, [])), f"{name}: out[{AUX!r}] is not a list of {{task: B×C×h×w}}"
    assert isinstance(out.get(SHARED, []), (list, tuple)) and all(isinstance(s, Tensor) for s in out.get(SHARED, [])), \
        f"{name}: out[{SHARED!r}] is not a list of tensors"
    report.ok("training outputs")

    with torch.no_grad(), capture_attention(net) as maps:
        net(x)
    for key, att in maps.items():
        assert att.shape[0] == b and torch.isfinite(att).all() and (att >= 0).all(), \
            f"{name}: attention maps of {key} ({tuple(att.shape)}) not finite, non-negative and batch first"
        if att.dim() == 4:
            torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)),
                                       msg=_says(f"{name}: attention rows of {key} do not sum to one"))
    if maps:
        report.ok("attention maps")
    report.notes["attention maps"] = ", ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items()) or "none"

    # a fixed random projection of each output: every path to it carries gradient
    weights = {t: torch.randn(out[t].shape, generator=gen) for t in tasks}
    losses = {t: (out[t] * weights[t]).mean() for t in tasks}
    for extra_out in out.get(AUX, []):
        for t, y in extra_out.items():
            y = y if y.shape[-2:] == (h, w) else F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            losses[t] = losses[t] + (y * weights[t]).mean()
    params = [p for p in trained.parameters() if p.requires_grad]
    shared = [p for p in trained.shared_parameters() if p.requires_grad]
    reach = {t: {id(p) for p, g in zip(params, torch.autograd.grad(losses[t], params, retain_graph=True,
                                                                    allow_unused=True)) if _nonzero(g)}
             for t in tasks}
    dead = [p for p in params if not any(id(p) in got for got in reach.values())]
    assert not dead, f"{name}: parameters no task's loss reaches: {_param_names(trained, dead)}"
    for t, got in reach.items():
        own = [p for p in trained.task_parameters(t) if p.requires_grad]
        missing = [p for p in own if id(p) not in got]
        assert not missing, \
            f"{name}: task {t}'s loss does not reach its own parameters {_param_names(trained, missing)}"
        assert any(id(p) in got for p in shared), f"{name}: task {t}'s loss reaches no shared parameter"
    report.ok("every parameter is reached; every task's loss reaches its own branch and the shared ones")

    report.notes["host syncs"] = _host_sync_note(net, x)
    report.notes["torch.compile"] = _compile_note(net, x) if compile_note else "not checked (compile_note=False)"
    return report


# -- datasets ----------------------------------------------------------------------------------------

# how a dataset stores targets other than labels (float32 depth, float16 normals, uint8 edge maps):
# batches hold them as float32, so a wider type only doubles the memory the frames take
_STORED = (torch.float32, torch.float16, torch.uint8)


def _check_split(name: str, split: str, ds: Any, info: DatasetInfo, size: int) -> None:
    """The promises of one split's arrays, sample format and scoring ground truth."""
    from mtlbench.data.datasets import DenseDataset
    from mtlbench.tasks.base import LABEL

    where = f"{name}: the {split} split"
    assert isinstance(ds, DenseDataset), f"{where} is a {type(ds).__name__}, not a DenseDataset"
    n = len(ds)
    assert n > 0, f"{where} is empty"
    assert ds.info == info, f"{where} carries another DatasetInfo than the splits' ({ds.info})"
    a = ds.arrays
    frame = (n, size, size)
    for key, dtype, shape in (("image", torch.uint8, (*frame, 3)), ("index", torch.int64, (n,))):
        t = getattr(a, key)
        assert t.dtype == dtype and tuple(t.shape) == shape, \
            f"{where}: {key} is {t.dtype} {tuple(t.shape)}, not {dtype} {shape}"
    missing, extra = [k for k in info.targets if k not in a.targets], [k for k in a.targets if k not in info.targets]
    assert not missing and not extra, f"{where}: " + "; ".join(
        ([f"the frames carry no {', '.join(missing)}, which info.targets lists"] if missing else [])
        + ([f"the frames carry {', '.join(extra)}, which info.targets does not list"] if extra else []))
    assert len(a.index.unique()) == n, f"{where}: a frame index appears twice"
    for key, spec in info.targets.items():
        t = a.targets[key]
        want = frame if spec.channels == 1 and t.dim() == 3 else (*frame, spec.channels)
        assert tuple(t.shape) == want, f"{where}: {key} is {tuple(t.shape)}, not {want} ({spec.kind}, " \
                                       f"{spec.channels} channel(s))"
        if spec.kind == LABEL:
            assert not t.is_floating_point(), f"{where}: {key} is {t.dtype}, not integer labels"
            labels = t.long()
            bad = labels[((labels < 0) | (labels >= info.num_classes)) & (labels != info.ignore_index)]
            assert bad.numel() == 0, \
                f"{where}: {key} labels {sorted(set(bad.unique().tolist()))[:5]} are neither classes " \
                f"0..{info.num_classes - 1} nor the ignore label {info.ignore_index}"
        else:
            assert t.dtype in _STORED, \
                f"{where}: {key} is {t.dtype} {tuple(t.shape)}, not {' or '.join(map(str, _STORED))} {want}"
            assert bool(torch.isfinite(t.float()).all()), f"{where}: {key} has values that are not finite"
    if "depth" in a.targets:
        assert (a.depth >= 0).all(), f"{where}: depth is not metres ≥ 0 (0 marks invalid pixels)"
    if "normals" in a.targets:
        norms = a.normals.float().norm(dim=-1)
        assert (((norms - 1).abs() < 1e-2) | (norms == 0)).all(), \
            f"{where}: normals are neither unit vectors nor the zero vector (invalid)"
    if "edge" in a.targets:
        values = a.edge.unique().tolist()[:5]
        assert bool(((a.edge == 0) | (a.edge == 1)).all()), f"{where}: edge has values {values}, not {{0, 1}}"

    sample = ds[0]
    image = sample.get("image")
    assert isinstance(image, Tensor) and tuple(image.shape) == (3, size, size) and image.dtype == torch.float32 \
        and 0 <= float(image.min()) and float(image.max()) <= 1, \
        f"{where}: sample['image'] is not float32 3×{size}×{size} in [0, 1]"
    for key, spec in info.targets.items():
        value = sample.get(key)
        want = (size, size) if spec.kind == LABEL else (spec.channels, size, size)
        assert isinstance(value, Tensor) and tuple(value.shape) == want, \
            f"{where}: sample[{key!r}] is {getattr(value, 'shape', value)!r}, not {want}"
        assert (value.dtype == torch.int64) == (spec.kind == LABEL), \
            f"{where}: sample[{key!r}] is {value.dtype}: labels are int64, other targets float"
    assert isinstance(sample.get("index"), int), f"{where}: sample['index'] is not an int"

    s = ds.scoring
    if s is not None:
        scored = (n, *s.size)
        for key, t in s.targets.items():
            assert key in info.targets and tuple(t.shape[:3]) == scored, \
                f"{where}: scoring ground truth {key} is {tuple(t.shape)}, not one frame per split frame at its " \
                f"crop size {scored}"


def check_dataset(dataset: str | Callable[..., Any], root: str = "", size: int = 32, max_depth: float = 10.0,
                  **options: Any) -> Report:
    """Check a dataset (a registered name or its factory, ``factory(root, size, max_depth,
    progress, **options)``) against the sample format of
    :mod:`mtlbench.data.datasets`, built at ``size`` from ``root`` (where it reads files):

    - the factory gives :class:`~mtlbench.data.datasets.DatasetSplits` whose train, val and test
      splits are non-empty :class:`~mtlbench.data.datasets.DenseDataset` s;
    - its ``info`` is a :class:`~mtlbench.tasks.DatasetInfo` with one class or more, the
      ``max_depth`` asked for, no class names or one per class, an ``ignore_index`` that is no
      class, and every split carries it;
    - each split's arrays: image N×size×size×3 uint8, index N int64 with no repeat, and exactly
      the targets ``info.targets`` lists, each N×size×size (one channel) or N×size×size×C as
      declared: labels integer classes or the ignore label, others finite float32, float16 or
      uint8 numbers; depth ≥ 0 (0 = invalid), normals unit or zero, edge maps in {0, 1};
    - no frame (by index) is in two splits;
    - where there is depth, some pixel has valid depth (0 < depth ≤ max_depth); where there are
      labels, some pixel has a class;
    - a sample (``split[0]``) is in the documented format: image 3×H×W float32 in [0, 1], each
      target as batches hold it (labels H×W int64, others C×H×W float) and an int index;
    - where a split has scoring ground truth, it holds one frame per split frame at its crop size;
    - two builds, one after the other (torch's global generator not reseeded), give equal arrays,
      info and scoring ground truth.
    """
    from mtlbench.data.datasets import SPLITS, DatasetSplits
    from mtlbench.tasks import LABEL, DatasetInfo

    name, factory = _named(DATASETS, dataset, "dataset")
    report = Report(name)

    def build() -> Any:  # unseeded: frames and splits must not hang on torch's global generator
        return factory(root, size, max_depth, None, **options)

    splits = build()
    assert isinstance(splits, DatasetSplits), f"{name}: the factory returned {type(splits).__name__}, not DatasetSplits"
    info = splits.info
    assert isinstance(info, DatasetInfo), f"{name}: info is a {type(info).__name__}, not a DatasetInfo"
    assert isinstance(info.num_classes, int) and info.num_classes >= 1, \
        f"{name}: info.num_classes is {info.num_classes!r}, not an int ≥ 1"
    assert math.isfinite(info.max_depth) and info.max_depth == max_depth, \
        f"{name}: info.max_depth is {info.max_depth}, not the max_depth asked for ({max_depth})"
    assert len(info.class_names) in (0, info.num_classes), \
        f"{name}: {len(info.class_names)} class names for {info.num_classes} classes"
    assert not 0 <= info.ignore_index < info.num_classes, \
        f"{name}: the ignore label {info.ignore_index} is one of the {info.num_classes} classes"
    report.ok("info")
    for split in SPLITS:
        _check_split(name, split, splits[split], info, size)
    report.ok("train, val and test arrays, samples and scoring")
    indices = {split: set(splits[split].arrays.index.tolist()) for split in SPLITS}
    for k, first in enumerate(SPLITS):
        for second in SPLITS[k + 1:]:
            both = sorted(indices[first] & indices[second])
            assert not both, f"{name}: frames {both[:5]} are in both the {first} and the {second} split"
    report.ok("splits disjoint")
    arrays = [splits[s].arrays for s in SPLITS]
    if "depth" in info.targets:
        assert any(bool(((a.depth > 0) & (a.depth <= max_depth)).any()) for a in arrays), \
            f"{name}: no pixel has valid depth (0 < depth ≤ {max_depth})"
    for key in (k for k, t in info.targets.items() if t.kind == LABEL):
        assert any(bool((a.targets[key].long() != info.ignore_index).any()) for a in arrays), \
            f"{name}: no pixel of {key} has a class"
    report.ok("valid targets")
    report.notes["frames"] = ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)

    again = build()
    assert again.info == info, f"{name}: not deterministic: a second build has another info ({again.info})"
    for split in SPLITS:
        a, b = splits[split], again[split]
        for what, one, two in (("arrays", a.arrays, b.arrays), ("scoring", a.scoring, b.scoring)):
            assert (one is None) == (two is None), f"{name}: not deterministic: the {split} {what} differ"
            for key, value in ({**vars(one), **one.targets} if one is not None else {}).items():
                if isinstance(value, Tensor):
                    other = {**vars(two), **two.targets}.get(key)
                    assert isinstance(other, Tensor) and other.shape == value.shape and torch.equal(other, value), \
                        f"{name}: not deterministic: a second build has another {split} {key}"
    report.ok("deterministic")
    return report
