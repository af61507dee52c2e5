"""What the checks share: the report, name lookups, messages, state and compile notes."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.registry import Registry
from mtlbench.tasks import DatasetInfo
from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS


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



def _default_info() -> DatasetInfo:

    return DatasetInfo(num_classes=5, max_depth=10.0, targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})
