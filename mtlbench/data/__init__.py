"""Datasets: synthrooms (procedural), NYUv2 (.mat cache) and NYUD-MT folders.

``from mtlbench.data import build_dataset, build_splits`` is the public way in; the names resolve
on first use so that importing a submodule stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_dataset", "build_splits"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mtlbench.data import datasets  # torch and the renderer: only when asked for

        return getattr(datasets, name)
    raise AttributeError(f"module 'mtlbench.data' has no attribute {name!r}")
