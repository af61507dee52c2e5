"""The contract every multi-task model of mtlbench follows, in one base class.

A :class:`MultiTaskModel` maps a B×3×H×W image to a dict of outputs:

* one raw head output per task, ``out[task]``: B×C×H×W at the input's size;
* in training mode only, optionally ``out[AUX]``: deep-supervision outputs, a list of
  ``{task: B×C×h×w}`` at any resolution (each adds one term to its task's loss);
* in training mode only, ``out[SHARED]``: the shared representation the task heads were computed
  from (a list of tensors), for weightings that differentiate through it (MGDA-UB).

Most models split into :meth:`encode` (the shared representation) and :meth:`decode` (the tasks'
branches); those that do not (a backbone per task) override :meth:`forward` and return no
``SHARED``. :meth:`shared_parameters` are the parameters every task's loss reaches (the
encoder by default), :meth:`task_parameters` a task's own branch, found by the ``ModuleDict`` s
keyed by task name. Attention maps are read with :func:`capture_attention`, through forward
hooks on modules that define ``attention_maps``; models carry no recording flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError

AUX = "aux"  # deep-supervision outputs
SHARED = "shared"  # the shared representation

Outputs = dict[str, Any]


class MultiTaskModel(nn.Module):
    """Base of every model: task names, run-header notes, the output contract, parameter groups.

    Args:
        tasks: the tasks the model predicts, in order.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.task_names = list(tasks)
        self.notes: list[str] = []  # lines for the run header

    # -- the forward contract ------------------------------------------------------------------
    def encode(self, x: Tensor) -> list[Tensor]:
        """The shared representation of ``x`` (e.g. the backbone's feature maps)."""
        raise NotImplementedError(f"{type(self).__name__} has no single shared encoder; it overrides forward")

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        """Every task's head output (and, in training, any ``AUX`` outputs) from ``shared``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Outputs:
        shared = self.encode(x)
        out = self.decode(shared, (x.shape[-2], x.shape[-1]))
        if self.training:
            out[SHARED] = shared
        return out

    # -- parameter groups ----------------------------------------------------------------------
    def shared_modules(self) -> list[nn.Module]:
        """The modules the tasks share; default: ``self.backbone``. Every task's loss reaches some
        of them; a part a task's decoder does not read (a skip only depth uses) gets a zero
        gradient from that task, as a shared encoder does in LibMTL's convention."""
        backbone = getattr(self, "backbone", None)
        return [backbone] if isinstance(backbone, nn.Module) else []

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of :meth:`shared_modules`: what gradient-level weightings combine per task."""
        return _unique(p for m in self.shared_modules() for p in m.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters of ``task``'s own branch: every ``ModuleDict`` entry keyed by the task. Through
        interactions a task's loss may reach other tasks' branches too."""
        if task not in self.task_names:
            raise KeyError(f"{type(self).__name__} has no task {task!r}: it has {', '.join(self.task_names)}")
        return _unique(p for m in self.modules() if isinstance(m, nn.ModuleDict) and task in m
                       for p in m[task].parameters())


def _unique(params: Iterator[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Inside, every forward of a module that defines ``attention_maps(*inputs)`` stores that
    module's maps (detached) under its qualified name in the yielded dict; outside, nothing is
    hooked and nothing costs."""
    maps: dict[str, Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        fn = getattr(module, "attention_maps", None)
        if callable(fn):
            def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any, key: str = name,
                     attention_maps: Callable[..., Tensor] = fn) -> None:
                with torch.no_grad():
                    maps[key] = attention_maps(*inputs).detach()

            handles.append(module.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def check_tasks(model: str, tasks: Mapping[str, Any], heads: Mapping[str, Any]) -> list[str]:
    """The task names, after one-line errors for no tasks or tasks whose head kind
    (``Task.head``) the model has no decoder for."""
    if not tasks:
        raise MtlbenchError(f"model {model} needs at least one task")
    unsupported = [f"{t} (head {task.head})" for t, task in tasks.items() if task.head not in heads]
    if unsupported:
        raise MtlbenchError(f"model {model} has no decoder for task {', '.join(unsupported)}: "
                            f"its decoders serve the head kinds {', '.join(heads)}")
    return list(tasks)
