"""The task graph of a model's interactions: which task guides which, at which decoder scale.

A model built on :class:`~mtlbench.models.base.MultiTaskModel` that refines one task's features
with another's declares its :class:`InteractionPoints` (the strides where it has per-task
features, and which tasks' decoders read them) in its registration, ``interaction_points=…``, and
takes the options ``interaction`` (a registered interaction) and ``guidance`` (the edges). The
host then checks ``[model.interaction]`` against that interaction's declared options and passes
them as ``interaction_options``.

An edge is written ``GUIDE->TARGET`` or ``GUIDE->TARGET@STRIDE`` (default: the coarsest point);
``all`` or ``all@STRIDE`` is every ordered pair of trained tasks whose target can be refined
there, target by target in the run's task order. Edges at one stride apply in the order given,
so ``seg->depth`` then ``depth->seg`` is served: seg is guided by the already refined depth.
Strides apply coarse to fine; the features at strides 8 and 4 are made from the refined stride-16
ones, not from each other (no propagation from scale to scale, unlike MTI-Net's).

This module is a leaf (no torch): option checks run while a configuration is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtlbench.errors import MtlbenchError
from mtlbench.registry import TASKS

ALL = "all"


@dataclass(frozen=True)
class Edge:
    """``guide`` refines ``target``'s features at ``stride``."""

    guide: str
    target: str
    stride: int

    def label(self) -> str:
        return f"{self.guide}→{self.target}"


@dataclass(frozen=True)
class InteractionPoints:
    """Where a model can apply interactions.

    Args:
        strides: the strides of its per-task features, coarsest (the default) first.
        targets: per stride, the tasks whose decoders read that stride's features (only those
            can be refined there); a stride missing here serves every task.
        tasks: every task the model serves; empty: every registered task.
    """

    strides: tuple[int, ...]
    tasks: tuple[str, ...]
    targets: Mapping[int, tuple[str, ...]]

    def can_refine(self, task: str, stride: int) -> bool:
        if stride in self.targets:
            return task in self.targets[stride]
        return task in self.known()

    def known(self) -> tuple[str, ...]:
        """The tasks edges may name."""
        return self.tasks or tuple(TASKS.names())


def _parse_one(text: str, points: InteractionPoints) -> tuple[str, str, int]:
    """(guide, target, stride) of one written edge; ``guide`` and ``target`` are ``all`` for ``all``."""
    body, at, stride_text = str(text).partition("@")
    stride = points.strides[0]
    if at:
        if not stride_text.strip().isdigit() or int(stride_text) not in points.strides:
            raise MtlbenchError(f"guidance edge {text!r}: the stride after @ must be one of "
                                f"{', '.join(map(str, points.strides))} (the model's interaction points)")
        stride = int(stride_text)
    if body.strip() == ALL:
        return ALL, ALL, stride
    parts = [p.strip() for p in body.split("->")]
    if len(parts) != 2 or any(p not in points.known() for p in parts) or parts[0] == parts[1]:
        raise MtlbenchError(f"guidance edge {text!r}: write GUIDE->TARGET[@STRIDE] with two different tasks of "
                            f"{', '.join(points.known())}, e.g. \"seg->depth\" or \"seg->depth@8\", or \"all\"")
    guide, target = parts
    if not points.can_refine(target, stride):
        refined = [s for s in points.strides if points.can_refine(target, s)]
        raise MtlbenchError(f"guidance edge {text!r}: {target}'s decoder reads no stride-{stride} features, so it "
                            f"can be refined at stride {', '.join(map(str, refined))} only: write "
                            f"\"{guide}->{target}@{refined[0]}\"")
    return guide, target, stride


def check_edges(edges: Sequence[str], points: InteractionPoints) -> str | None:
    """What is wrong with a written edge list, as an option check returns it, or ``None``."""
    try:
        task_graph(edges, points.known(), points)
    except MtlbenchError as exc:
        return str(exc)
    return None


def task_graph(edges: Sequence[str], trained: Sequence[str], points: InteractionPoints,
               optional: bool = False) -> tuple[list[Edge], list[str]]:
    """The edges among the ``trained`` tasks, coarse strides first and in the given order within a
    stride, and one line per edge left off.

    Args:
        optional: an edge naming a task that is not trained is left off (the model's default
            edges, so that the same model trains any subset of tasks); otherwise it is an error.

    Raises:
        MtlbenchError: a malformed or repeated edge, a target that cannot be refined at its
            stride, or (not ``optional``) an edge naming a task the run does not train.
    """
    given: dict[Edge, str] = {}  # each edge and the written item that gave it
    off: list[str] = []
    for text in edges:
        guide, target, stride = _parse_one(text, points)
        if guide == ALL:  # target by target in the order of the trained tasks, which orders a cycle
            pairs = [(g, t) for t in trained for g in trained if g != t and points.can_refine(t, stride)]
        else:
            missing = [t for t in (guide, target) if t not in trained]
            if missing and not optional:
                raise MtlbenchError(f"guidance edge {text!r} names {' and '.join(missing)}, which this run does not "
                                    f"train (it trains {', '.join(trained)}): drop the edge or add the task")
            if missing:
                off.append(f"{guide}→{target} guidance: off ({' and '.join(missing)} not requested)")
                continue
            pairs = [(guide, target)]
        for g, t in pairs:
            edge = Edge(g, t, stride)
            if edge in given:
                again = "is given twice" if given[edge] == text else f"repeats {edge.label()} of {given[edge]!r}"
                raise MtlbenchError(f"guidance edge {text!r} {again}: keep one")
            given[edge] = text
    out = sorted(given, key=lambda e: -e.stride)  # stable: the given order within a stride
    return out, off


def graph_notes(edges: Sequence[Edge], off: Sequence[str], interaction: str,
                options: Mapping[str, Any]) -> list[str]:
    """The run header's lines for a task graph: the interaction and its options, then the edges
    of each stride in the order they apply."""
    if not edges:
        return [*off, "guidance: none"]
    settings = ", ".join(f"{k}={v}" for k, v in options.items())
    lines = [f"interaction {interaction}" + (f" ({settings})" if settings else "")]
    for stride in sorted({e.stride for e in edges}, reverse=True):
        lines.append(f"guidance at stride {stride}: " + ", ".join(e.label() for e in edges if e.stride == stride))
    return lines + list(off)
