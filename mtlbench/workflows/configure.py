"""A run's configuration from what a command was given: a preset or a config file, then dotted
settings (flags, ``--set KEY=VALUE``), laid over it by :mod:`mtlbench.settings`'s one rule and
resolved whole (checked against every declaration, each default spelled out)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mtlbench import config as C
from mtlbench import settings as S
from mtlbench.config import RunConfig
from mtlbench.engine.build import resolve
from mtlbench.errors import MtlbenchError
from mtlbench.tasks import parse_tasks


def configure(preset: str | None = None, config: Path | None = None, settings: dict[str, Any] | None = None,
              sets: list[str] | None = None) -> RunConfig:
    """``preset`` (default the paper's) or the file ``config``, with ``settings`` (key → value) and
    ``sets`` (``KEY=VALUE`` items) laid over it, resolved."""
    if config is not None and preset is not None:
        raise MtlbenchError("preset and config both give a whole configuration: choose one")
    named: set[str] = set()
    if config is not None:
        base = C.load(config, named)
    else:
        base = C.preset(preset or RunConfig.preset)
        named = C.named_keys(C.PRESETS[base.preset])
    given = {**(settings or {}), **S.parse_sets(sets or [])}
    if isinstance(given.get("tasks"), str):
        given["tasks"] = list(parse_tasks(str(given["tasks"])))
    cfg = S.apply(base, given, "setting", named=named,
                  say=lambda line: warnings.warn(line, C.ConfigWarning, stacklevel=2))
    resolve(cfg)
    return cfg
