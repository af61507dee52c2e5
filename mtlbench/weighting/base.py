"""The weighting interface: a weighting owns the step's backward pass.

The trainer computes the per-task losses and hands them, with the model and the shared
representation of the forward, to :meth:`Weighting.backward`, which leaves the step's gradients
in ``.grad`` of every parameter and returns the scalar logged as the total loss. The trainer knows
nothing of methods. Two kinds share the interface:

* :class:`LossWeighting`: the gradients of one scalar made from the losses (fixed weights,
  uncertainty, DWA, FAMO, …): write :meth:`~LossWeighting.combine`.
* :class:`GradientWeighting`: per-task gradients of the model's shared parameters (or of the
  shared representation) combined into one (PCGrad, MGDA, …): write
  :meth:`~GradientWeighting.aggregate`, or :meth:`~GramianWeighting.weigh` when the method needs
  only the tasks' inner products; every other parameter gets the gradient of the plain sum.

Several processes. A weighting is handed the trainer's process group as ``self.dist`` and must
compute what one process would on the global batch:

* a loss-level method evaluates its scalar on the losses averaged over the processes, and each
  process back-propagates ``Σ_t w_t·L_t`` of its own losses with ``w = ∂combine/∂L`` there; the
  trainer then averages the gradients as for any model. Weights that depend on the losses are
  therefore the same in every process.
* a gradient-level method averages the T×P matrix of per-task gradients before combining it (the
  trainer then leaves those gradients alone), or, through the representation, sums the processes'
  Gramians (inner products need no gather) or gathers the matrix.

A weighting is an ``nn.Module``: its parameters (learned weights) are optimised with the model's
and its state (buffers, and :meth:`get_extra_state` for anything else) is saved in checkpoints.
Each step it leaves the weights it gave the tasks in :attr:`Weighting.applied`, which the trainer
averages per epoch into ``log.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from mtlbench.models.base import MultiTaskModel


class Group(Protocol):
    """What a weighting needs of the trainer's process group (:class:`mtlbench.engine.distributed.Dist`)."""

    @property
    def world(self) -> int: ...

    @property
    def rank(self) -> int: ...

    def average_(self, t: Tensor) -> Tensor: ...

    def sum_(self, t: Tensor) -> Tensor: ...

    def cat(self, t: Tensor) -> Tensor: ...


class Local:
    """One process: the group operations are identities."""

    world = 1
    rank = 0

    def average_(self, t: Tensor) -> Tensor:
        return t

    def sum_(self, t: Tensor) -> Tensor:
        return t

    def cat(self, t: Tensor) -> Tensor:
        return t


class Weighting(nn.Module):
    """Turns the per-task losses of one step into gradients.

    Args:
        tasks: the trained tasks, in order.
    """

    level: ClassVar[str] = ""  # "loss" or "gradient", shown by `mtlbench list weightings`
    # whether :meth:`after_step` wants the losses recomputed on the step's batch (one more forward)
    updates_after_step: ClassVar[bool] = False

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.dist: Group = Local()
        # the weight each task received in the last step (T, detached), or None where the method's
        # update is not a weighted sum of the tasks' gradients
        self.applied: Tensor | None = None

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        """Write the step's gradients into ``.grad``; return the total loss to log (detached).

        Args:
            losses: each task's scalar loss, in the graph of the step's forward.
            model: the model, for its shared and task parameters.
            shared: the shared representation of the forward (``out[SHARED]``), if the model has one.
            scale: fp16's loss scale: the gradients written are ``scale`` times the true ones
                (the gradient scaler divides them again), the total returned is not scaled.
        """
        raise NotImplementedError

    def after_step(self, recompute: Callable[[], Mapping[str, Tensor]]) -> None:
        """Called after the optimiser step when :attr:`updates_after_step`; ``recompute()`` gives
        the losses of the same batch under the updated model (no graph)."""

    def end_epoch(self, losses: Tensor) -> None:
        """Called after each training epoch with the tasks' mean training losses (T, the same in
        every process)."""

    def vector(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The losses as one float32 vector in task order."""
        return torch.stack([losses[t].float() for t in self.tasks])


class LossWeighting(Weighting):
    """A weighting that makes one scalar of the losses and back-propagates it.

    :meth:`combine` is evaluated on the process-averaged loss values; its derivative there gives
    each task's weight (:attr:`applied`), and the model receives the gradient of Σ_t w_t·L_t. For
    one process this is exactly the gradient of ``combine(losses)``.
    """

    level = "loss"

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return self.combine(losses)

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        local = self.vector(losses)
        values = self.dist.average_(local.detach().clone()).requires_grad_(True)
        total = self.combine(dict(zip(self.tasks, values)))
        own = [p for p in self.parameters() if p.requires_grad]
        grads = torch.autograd.grad(total, [values, *own], allow_unused=True)
        weights = grads[0] if grads[0] is not None else torch.zeros_like(values)
        for p, g in zip(own, grads[1:]):
            if g is not None:  # the gradient scaler unscales every parameter of the optimiser
                p.grad = g * scale
        self.applied = weights.detach()
        if local.requires_grad:
            torch.autograd.backward((self.applied * local).sum() * scale)  # typed, unlike Tensor.backward
        return total.detach()


def _flat(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(x)).reshape(-1).float()
                      for g, x in zip(grads, like)])


class GradientWeighting(Weighting):
    """A weighting that combines the tasks' gradients of the shared parameters.

    The T×P matrix of per-task gradients (one row per task, P the shared parameters flattened,
    float32 whatever the autocast) goes to :meth:`aggregate`, whose P-vector becomes the shared
    parameters' gradient; the other parameters receive the gradient of Σ_t L_t. Costs T backward
    passes of the whole network and one of the task branches.

    With ``through="representation"`` the rows are the gradients of the shared representation
    (``out[SHARED]``) instead, as MGDA-UB does (Sener & Koltun 2018): T backward passes of the
    task branches only, and the combined gradient is back-propagated once through the encoder.
    """

    level = "gradient"
    representation_ok: ClassVar[bool] = True  # whether rows of the representation make sense here

    def __init__(self, tasks: Sequence[str], through: str = "parameters") -> None:
        super().__init__(tasks)
        if len(self.tasks) < 2:
            raise ValueError(f"it combines the gradients of several tasks and only {self.tasks[0]} is trained: "
                             f"train two tasks or more, or set weighting.name to fixed")
        if through not in ("parameters", "representation"):
            raise ValueError(f"through must be 'parameters' or 'representation', not {through!r}")
        if through == "representation" and not self.representation_ok:
            raise ValueError("its state is kept per shared parameter: through = 'representation' does not apply")
        self.through = through
        self.loss_values: Tensor | None = None

    @property
    def averages_shared(self) -> bool:
        """Whether the shared parameters' gradients it writes are already the processes' average."""
        return self.through == "parameters"

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The combined gradient (P) from the per-task gradients (T×P, rows in ``self.tasks`` order)."""
        raise NotImplementedError

    def branch_weights(self) -> Tensor | None:
        """Each task's weight in the task branches' gradient (None: the plain sum)."""
        return None

    def aggregate_local(self, jacobian: Tensor) -> Tensor:
        """Representation rows of this process's samples (T×n): the combined gradient of them, as
        the whole batch's aggregation gives it. The gathered matrix is every process's rows over
        the world size (the global loss is the processes' mean)."""
        d = self.dist
        if d.world == 1:
            return self.aggregate(jacobian)
        n = jacobian.shape[1]
        full = d.cat(jacobian.t().contiguous()).t() / d.world
        if full.shape[1] != n * d.world:
            raise RuntimeError("the processes' shared representations differ in size: give each the same batch")
        # the trainer averages the processes' gradients: each contributes its slice times the world
        return self.aggregate(full)[d.rank * n:(d.rank + 1) * n] * d.world

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        params = [p for p in model.shared_parameters() if p.requires_grad]
        ids = {id(p) for p in params}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        through_rep = self.through == "representation"
        if through_rep and not shared:
            raise ValueError(f"through = 'representation' needs the model's shared representation and "
                             f"{type(model).__name__} gives none: use through = 'parameters'")
        inputs: list[Tensor] = list(shared) if through_rep and shared else list(params)
        values = [losses[t] for t in self.tasks]
        # the processes' mean loss values, for methods that scale the rows by them (DB-MTL)
        self.loss_values = self.dist.average_(torch.stack([v.detach().float() for v in values]))
        rows = [_flat(torch.autograd.grad(v * scale, inputs, retain_graph=True, allow_unused=True), inputs)
                for v in values]
        # the methods see true gradients: several are not scale-equivariant (MGDA normalises)
        jacobian = torch.stack(rows) / scale
        stacked = torch.stack([v.float() for v in values])
        total = stacked.sum()
        if others:  # the task branches, pruned to them
            branch = self.branch_weights()
            objective = total if branch is None else (branch * stacked).sum()
            torch.autograd.backward(objective * scale, inputs=others, retain_graph=through_rep)
        if through_rep:
            combined = self.aggregate_local(jacobian) * scale
            pieces = torch.split(combined, [s.numel() for s in inputs])
            torch.autograd.backward(inputs, grad_tensors=[c.view_as(s).to(s.dtype) for c, s in zip(pieces, inputs)],
                                    inputs=params)
            return total.detach()
        combined = self.aggregate(self.dist.average_(jacobian)) * scale
        offset = 0
        for p in params:
            n = p.numel()
            # into the layout of the parameter (channels_last too): fused Adam pairs raw memory
            grad = p.grad if p.grad is not None else torch.empty_like(p)
            p.grad = grad.copy_(combined[offset:offset + n].view_as(p))
            offset += n
        return total.detach()


class GramianWeighting(GradientWeighting):
    """A gradient-level method whose weights depend only on the tasks' inner products (the T×T
    Gramian J·Jᵀ): the update is Σ_t w_t·g_t. Through the representation under several
    processes, the Gramians are summed instead of gathering the rows."""

    def weigh(self, gramian: Tensor) -> Tensor:
        """The task weights (T) from the Gramian (T×T)."""
        raise NotImplementedError

    def aggregate(self, jacobian: Tensor) -> Tensor:
        self.applied = self.weigh(jacobian @ jacobian.t()).detach()
        return self.applied @ jacobian

    def aggregate_local(self, jacobian: Tensor) -> Tensor:
        d = self.dist
        if d.world == 1:
            return self.aggregate(jacobian)
        # the global rows are every process's rows over the world size: G = Σ_r G_r / W²
        gramian = d.sum_(jacobian @ jacobian.t()) / d.world ** 2
        self.applied = self.weigh(gramian).detach()
        return self.applied @ jacobian


# -- state of wrapped objects that keep it in plain attributes (torchjd's stateful methods) --------

_MODULE_SLOTS = {"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules",
                 "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
                 "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                 "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                 "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"}


def _encode(value: Any) -> tuple[bool, Any]:
    """(kept, checkpoint-safe form) of an attribute value."""
    if isinstance(value, Tensor):
        return True, value.detach().clone()
    if isinstance(value, np.ndarray):
        return True, {"ndarray": torch.from_numpy(np.array(value))}
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return True, value
    if isinstance(value, (list, tuple)):
        parts = [_encode(v) for v in value]
        if all(k for k, _ in parts):
            return True, {"list" if isinstance(value, list) else "tuple": [v for _, v in parts]}
    return False, None


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "ndarray" in value:
            return value["ndarray"].numpy()
        if "list" in value:
            return [_decode(v) for v in value["list"]]
        if "tuple" in value:
            return tuple(_decode(v) for v in value["tuple"])
    return value


def attribute_state(module: nn.Module) -> dict[str, Any]:
    """Every plain attribute (tensors, arrays, numbers, tuples of them) of ``module`` and its
    submodules, for a checkpoint: what a method keeps outside its parameters and buffers."""
    state: dict[str, Any] = {}
    for name, m in module.named_modules():
        for key, value in vars(m).items():
            if key in _MODULE_SLOTS or key.startswith("__"):
                continue
            kept, encoded = _encode(value)
            if kept:
                state[f"{name}:{key}"] = encoded
    return state


def load_attribute_state(module: nn.Module, state: Mapping[str, Any]) -> None:
    """Undo :func:`attribute_state`."""
    modules = dict(module.named_modules())
    for qualified, value in state.items():
        name, key = qualified.rsplit(":", 1)
        value = _decode(value)
        if isinstance(value, Tensor):
            current = vars(modules[name]).get(key)
            if isinstance(current, Tensor):
                value = value.to(current.device)
        object.__setattr__(modules[name], key, value)
