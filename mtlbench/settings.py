"""Settings laid over a configuration: ``run``'s flags and ``--set KEY=VALUE``, a sweep's base,
rows and cells. One rule decides what happens to the options of a choice a setting replaces.

A choice is a name with its options table: the dataset (``data.name``, ``[data.options]``), the
model (``model.name``, ``[model.options]`` and ``[model.interaction]``), the interaction
(``model.options.interaction``, ``[model.interaction]``), the weighting (``weighting.name``,
``[weighting.options]``) and each task's loss (``loss.names.TASK``, ``[loss.options.TASK]``).
When a setting chooses another name:

- where the configuration it is laid over names its own choice (a run's ``config.toml`` names
  them all), that choice's options are dropped, with one line saying so where they held any;
- where it names none (the name was a default), its options apply to the new choice and are
  checked against what that choice declares when the configuration is resolved (a misspelt key
  is an error with the close matches).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mtlbench import config as C
from mtlbench.errors import MtlbenchError
from mtlbench.spellings import preset_name, protocol_name

Say = Callable[[str], None]


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items: the value read as TOML (``3``, ``1e-3``, ``true``, ``["a"]``),
    else as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise MtlbenchError(f"setting {item!r}: write KEY=VALUE, e.g. data.name=nyuv2")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = value
    return out


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = copy.deepcopy(value)
    return out


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _in_table(parts: list[str]) -> bool:
    """Whether a dotted key lives inside a factory's table (``model.options.grid``, ``loss.names.depth``,
    ``model.interaction.dim``, ``task_options.edge.thickness``)."""
    return len(parts) >= 3 and (parts[1] == "options" or parts[0] == "task_options"
                                or parts[:2] in (["loss", "names"], ["model", "interaction"]))


def _chooses(parts: list[str]) -> bool:
    """Whether a dotted key inside a table chooses a factory (a task's loss, the interaction)."""
    return parts[:2] == ["loss", "names"] or parts == ["model", "options", "interaction"]


class _Rule:
    """The drop-or-keep rule for one application of settings."""

    def __init__(self, named: Collection[str] | None, say: Say | None) -> None:
        self.named, self.say = named, say

    def replaced(self, key: str, old: str, new: str, tables: Mapping[str, Any]) -> bool:
        """Whether the options ``tables`` of choice ``key`` (``old`` → ``new``) are dropped."""
        if old == new:
            return False
        if self.named is not None and key not in self.named:
            return False  # a default replaced: the options given apply to the new choice
        held = [t for t, v in tables.items() if v]
        if held and self.say is not None:
            self.say(f"{key} {new!r} replaces {old!r}, which the configuration names: {', '.join(held)} of "
                     f"{old!r} dropped")
        return True


def rebase(cfg: C.RunConfig, base: C.RunConfig, named: Collection[str] | None = None, say: Say | None = None
           ) -> None:
    """``cfg`` is ``base`` with settings laid over it; apply the rule (module doc) to the dataset,
    model and weighting, in place. ``named``: the keys ``base`` names itself (``None``: all, as a
    run's own ``config.toml``). A task list that changed keeps the tables of the tasks still
    trained, and a criterion that was the default follows."""
    rule = _Rule(named, say)
    if rule.replaced("data.name", base.data.name, cfg.data.name, {"data.options": cfg.data.options}):
        cfg.data.options = {}
    m = cfg.model
    if rule.replaced("model.name", base.model.name, m.name, {"model.options": m.options,
                                                             "model.interaction": m.interaction}):
        m.options, m.interaction = {}, {}
    w = cfg.weighting
    if rule.replaced("weighting.name", base.weighting.name, w.name, {"weighting.options": w.options}):
        w.options = {}
    if list(cfg.tasks) != list(base.tasks):
        cfg.task_options = {t: o for t, o in cfg.task_options.items() if t in cfg.tasks}
        cfg.loss.names = {t: n for t, n in cfg.loss.names.items() if t in cfg.tasks}
        cfg.loss.options = {t: o for t, o in cfg.loss.options.items() if t in cfg.tasks}
        default = copy.deepcopy(base)
        default.train.select = "auto"
        if cfg.train.select == base.train.select == C.resolved_select(default):
            cfg.train.select = "auto"


def apply(cfg: C.RunConfig, settings: Mapping[str, Any], where: str, named: Collection[str] | None = None,
          say: Say | None = None) -> C.RunConfig:
    """A copy of ``cfg`` with dotted ``settings`` laid over it, the rule (module doc) applied to
    every choice they make; ``named`` and ``say`` as :func:`rebase` takes them."""
    from mtlbench.engine.build import chosen_interaction  # lazy: imports torch

    rule = _Rule(named, say)
    plain: dict[str, Any] = {}
    tables: list[tuple[list[str], Any]] = []
    for key, value in settings.items():
        parts = key.split(".")
        if not all(parts):
            raise MtlbenchError(f"{where}: {key!r} is not a setting key (SECTION.NAME, e.g. model.backbone)")
        if _in_table(parts):
            tables.append((parts, value))
        else:
            _merge(plain, _nest(key, value))
    new = C.from_dict(plain, copy.deepcopy(cfg), where=where)  # never edits ``cfg``
    rebase(new, cfg, named, say)
    choices = [(p, v) for p, v in tables if _chooses(p)]
    for parts, value in choices + [(p, v) for p, v in tables if not _chooses(p)]:
        if parts[0] == "task_options":
            target: Any = new.task_options.setdefault(parts[1], {})
        else:
            target = getattr(getattr(new, parts[0], None), parts[1], None)
        if not isinstance(target, dict):
            raise MtlbenchError(f"{where}: unknown key {'.'.join(parts)!r} (options live in data.options, "
                                f"model.options, model.interaction, weighting.options, loss.options.TASK, "
                                f"task_options.TASK; losses in loss.names.TASK)")
        if parts[:2] == ["loss", "names"]:
            old = new.loss.names.get(parts[2], "(the task's default)")
            if rule.replaced(".".join(parts), old, value, {f"loss.options.{parts[2]}": new.loss.options.get(parts[2])}):
                new.loss.options.pop(parts[2], None)
        if parts == ["model", "options", "interaction"]:
            current = chosen_interaction(new.model)
            given = plain.get("model", {}).get("interaction")
            if current is not None and rule.replaced("model.options.interaction", current, value,
                                                 {"model.interaction": new.model.interaction}):
                # the options of the interaction it replaces, or those the settings give as a whole table
                new.model.interaction = copy.deepcopy(given or {})
        for p in parts[2:-1]:
            node = target.setdefault(p, {})
            if not isinstance(node, dict):
                raise MtlbenchError(f"{where}: {'.'.join(parts)}: {p} is a value, not a table")
            target = node
        target[parts[-1]] = copy.deepcopy(value)
    # the names of an earlier version, as they are now (one line each)
    new.preset = preset_name(new.preset)
    if "protocol" in new.data.options:
        new.data.options["protocol"] = protocol_name(new.data.name, new.data.options["protocol"])
    return new
