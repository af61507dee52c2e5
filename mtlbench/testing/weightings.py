"""check_weighting: the weighting contract."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.models.base import SHARED, MultiTaskModel, Outputs
from mtlbench.registry import WEIGHTINGS
from mtlbench.testing.common import Report, _declared, _named, _nonzero, _saved, _says
from mtlbench.weighting.base import GramianWeighting, LossWeighting, Weighting

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
