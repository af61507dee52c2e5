"""Options a factory declares, and the check of a configuration's option table against them.

A registered factory (dataset, model, loss, weighting, interaction) says which options it takes::

    @MODELS.register("mtinet", options={"interaction": "guided_attention"})
    def mtinet(tasks, backbone, interaction): ...

    @DATASETS.register("synthrooms", options={"frames": Option(1449, "frames rendered", at_least(1))})

The type of an option is the type of its default (which must not be ``None``: TOML has no null). :func:`resolve_options`
turns the table a user wrote (``[model.options]``) into the full set the factory is called with:
an unknown key is one error line with the close matches, a value of the wrong type or outside
its range likewise, and every default is spelled out so that ``config.toml`` reproduces the run
whatever later versions default to. Nothing is read back from signatures.

This module is a leaf (no torch, no registry).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mtlbench.errors import MtlbenchError

Check = Callable[[Any], "str | None"]  # returns what is wrong with a value, or None


@dataclass(frozen=True)
class Option:
    """One declared option: its default, a line of help and an optional value check."""

    default: Any
    help: str = ""
    check: Check | None = None



def declare_options(options: Mapping[str, Any]) -> Mapping[str, Option]:
    """Plain defaults become :class:`Option` s; the order is kept.

    Raises:
        MtlbenchError: a default of ``None`` (it could not be written to ``config.toml``).
    """
    declared = {k: v if isinstance(v, Option) else Option(v) for k, v in options.items()}
    for k, o in declared.items():
        if o.default is None:
            raise MtlbenchError(f"option {k!r} has no default: declare one (TOML has no null), e.g. \"\" or 0")
    return declared


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}, got {v}"


def positive(v: float) -> str | None:
    return None if v > 0 else f"must be positive, got {v}"


def one_of(*choices: Any) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}, got {v!r}"


def _type_error(value: Any, default: Any) -> str | None:
    """What is wrong with ``value`` for an option whose default is ``default``."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected an integer, got {value!r}"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"expected a number, got {value!r}"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else f"expected a list, got {value!r}"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else f"expected a table, got {value!r}"
    return None


def _normalise(value: Any, default: Any) -> Any:
    if isinstance(default, float) and not isinstance(default, bool):
        return float(value)
    if isinstance(default, tuple):
        return list(value)
    return value


def unknown_option(owner: str, key: str, known: Mapping[str, Any], where: str | None = None) -> MtlbenchError:
    """The error for an option ``owner`` does not take; ``where`` (the table's name in the
    configuration, "data.options") puts the dotted key first, as the configuration spells it."""
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    takes = f"it takes {', '.join(known)}" if known else "it takes no options"
    first = f"{where}.{key}: " if where else ""
    return MtlbenchError(f"{first}{owner} takes no option {key!r}{hint} ({takes})")


def resolve_options(owner: str, declared: Mapping[str, Option], given: Mapping[str, Any],
                    where: str) -> dict[str, Any]:
    """``given`` checked against ``declared`` and completed with the defaults, in declared order.

    Args:
        owner: who takes the options, for messages ("dataset nyuv2").
        declared: what the factory declares.
        given: what the configuration says.
        where: the table's name in the configuration ("data.options").

    Raises:
        MtlbenchError: an unknown key (with close matches), a wrong type, a value its check refuses.
    """
    for key in given:
        if key not in declared:
            raise unknown_option(owner, key, declared, where)
    out: dict[str, Any] = {}
    for key, opt in declared.items():
        if key not in given:  # a copy: a run that edits its options must not edit the declared default
            out[key] = _normalise(copy.deepcopy(opt.default), opt.default)
            continue
        value = copy.deepcopy(given[key])
        problem = _type_error(value, opt.default) or (opt.check(value) if opt.check else None)
        if problem:
            raise MtlbenchError(f"{where}.{key} ({owner}): {problem}")
        out[key] = _normalise(value, opt.default)
    return out
