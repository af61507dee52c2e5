"""The weighting interface: a weighting owns the step's backward pass.

The trainer computes the per-task losses and hands them, with the model and the shared
representation of the forward, to :meth:`Weighting.backward`, which leaves the step's gradients
in ``.grad`` of every parameter and returns the scalar logged as the total loss. The trainer knows
nothing of methods. Two kinds share the interface:

* :class:`LossWeighting`: the gradients of one scalar made from the losses (fixed weights,
  uncertainty, …): write :meth:`~LossWeighting.combine`.
* :class:`GradientWeighting`: per-task gradients of the model's shared parameters combined into
  one (PCGrad, MGDA, …): write :meth:`~GradientWeighting.aggregate`; every other parameter gets
  the gradient of the plain sum of the losses.

A weighting is an ``nn.Module``: its parameters (learned weights) are optimised with the model's
and its state is saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from mtlbench.models.base import MultiTaskModel


def _same(t: Tensor) -> Tensor:
    return t


class Weighting(nn.Module):
    """Turns the per-task losses of one step into gradients.

    Args:
        tasks: the trained tasks, in order.
    """

    level: ClassVar[str] = ""  # "loss" or "gradient", shown by `mtlbench list weightings`

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        # the trainer's, when several processes train: averages a tensor over them in place
        self.average: Callable[[Tensor], Tensor] = _same

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


class LossWeighting(Weighting):
    """A weighting that makes one scalar of the losses and back-propagates it."""

    level = "loss"

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return self.combine(losses)

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        total = self.combine(losses)
        torch.autograd.backward(total * scale)  # typed, unlike Tensor.backward
        return total.detach()


class GradientWeighting(Weighting):
    """A weighting that combines the tasks' gradients of the shared parameters.

    The T×P matrix of per-task gradients (one row per task, P the shared parameters flattened)
    goes to :meth:`aggregate`, whose P-vector becomes the shared parameters' gradient. The other
    parameters receive the gradient of Σ_t L_t. Costs T + 1 backward passes.
    """

    level = "gradient"

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The combined gradient (P) from the per-task gradients (T×P, rows in ``self.tasks`` order)."""
        raise NotImplementedError

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        params = [p for p in model.shared_parameters() if p.requires_grad]
        rows = []
        for task in self.tasks:
            grads = torch.autograd.grad(losses[task] * scale, params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                   for g, p in zip(grads, params)]))
        total = torch.stack([losses[t] for t in self.tasks]).sum()
        torch.autograd.backward(total * scale)  # typed, unlike Tensor.backward
        # the methods see true gradients: several are not scale-equivariant (MGDA normalises)
        jacobian = self.average(torch.stack(rows)) / scale
        combined = self.aggregate(jacobian) * scale
        offset = 0
        for p in params:
            n = p.numel()
            # into the layout of the parameter (channels_last too): fused Adam pairs raw memory
            grad = p.grad if p.grad is not None else torch.empty_like(p)
            p.grad = grad.copy_(combined[offset:offset + n].view_as(p))
            offset += n
        return total.detach()
