"""Streamed metrics: ``update`` per batch, ``compute`` once per split.

Definitions, conventions and how they differ from other toolkits: ``docs/evaluation.md``.
Labels, units and directions of every key: :mod:`mtlbench.metrics.records`.

The classes are imported on first use (PEP 562), so that ``mtlbench.metrics.records`` can be
imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlbench.metrics.base import Metric
    from mtlbench.metrics.depth import DepthMetrics
    from mtlbench.metrics.edge import EdgeMetrics
    from mtlbench.metrics.normals import NormalsMetrics
    from mtlbench.metrics.seg import SegMetrics

_LAZY = {"DepthMetrics": "depth", "EdgeMetrics": "edge", "Metric": "base", "NormalsMetrics": "normals",
         "SegMetrics": "seg"}

__all__ = ["DepthMetrics", "EdgeMetrics", "Metric", "NormalsMetrics", "SegMetrics"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
