"""Tasks as registered entries: the contract (:mod:`mtlbench.tasks.base`) and the built-in tasks,
one module each (depth, seg, edge, normals). A plugin's task uses exactly the same API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtlbench.errors import MtlbenchError
from mtlbench.registry import TASKS
from mtlbench.tasks.base import (
    CONTINUOUS,
    HEADS,
    KINDS,
    LABEL,
    VECTOR,
    DatasetInfo,
    Target,
    Task,
    gray,
    ramp,
    voc_palette,
)
from mtlbench.tasks.depth import DepthTask
from mtlbench.tasks.edge import EdgeTask
from mtlbench.tasks.normals import NormalsTask
from mtlbench.tasks.seg import SegTask, nyu40_names

__all__ = ["CONTINUOUS", "HEADS", "KINDS", "LABEL", "VECTOR", "DatasetInfo", "DepthTask", "EdgeTask", "NormalsTask",
           "SegTask", "Target", "Task", "build_tasks", "gray", "nyu40_names", "parse_tasks", "ramp", "voc_palette"]


def parse_tasks(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"depth,seg"`` → ``("depth", "seg")``: non-empty, known, no repeats, order kept."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [s.strip() for s in spec]
    names = [n for n in names if n]
    if not names:
        raise MtlbenchError(f"empty task list: name one or more of {', '.join(TASKS.names())} (tasks = [...])")
    for n in names:
        TASKS.entry(n)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MtlbenchError(f"task listed twice: {', '.join(dup)}")
    return tuple(names)


def build_tasks(names: tuple[str, ...], info: DatasetInfo,
                options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Task]:
    """The tasks named, built for a dataset with ``info``, each with its options (``[task_options.NAME]``)."""
    options = options or {}
    return {n: TASKS.build(n, info, **dict(options.get(n, {}))) for n in names}
