"""Earlier spellings of a configuration and what they are now: renamed presets and split
protocols, keys that moved (into options tables, into a task's options) or are gone, and whole
config files written before the options tables. A file, sweep spec, flag or setting that uses an
earlier spelling loads under today's, with one ``warning:`` line saying the new one; a setting
that names a moved key is refused, naming where it lives now.

Kept apart from :mod:`mtlbench.config` so that today's schema reads without its history.
"""

from __future__ import annotations

import warnings
from typing import Any


class ConfigWarning(UserWarning):
    """A configuration that loads under an old spelling: the message says the new one."""


# Names of earlier versions and the names they are now: a config file, sweep spec, flag or setting
# that uses one loads under the new name, with one line saying so.
RENAMED_PRESETS = {"seed": "beneath"}
# the split protocols of the built-in datasets (a plugin's dataset keeps its own names)
RENAMED_PROTOCOLS = {"synthrooms": {"seed": "random"}, "nyuv2": {"seed": "random"}}


def preset_name(name: str) -> str:
    """``name``, or the name a preset of an earlier version has now (with one line saying so)."""
    new = RENAMED_PRESETS.get(name)
    if new is None:
        return name
    warnings.warn(f'preset "{name}" is now "{new}"', ConfigWarning, stacklevel=2)
    return new


def protocol_name(dataset: str, protocol: Any) -> Any:
    """``dataset``'s split ``protocol``, or the name it has now where an earlier version named it
    otherwise (with one line saying so)."""
    new = RENAMED_PROTOCOLS.get(dataset, {}).get(protocol) if isinstance(protocol, str) else None
    if new is None:
        return protocol
    warnings.warn(f'data.options.protocol "{protocol}" is now "{new}"', ConfigWarning, stacklevel=2)
    return new


# [data] keys that became a task's options: where each lives now (files that use them load,
# with one line; a setting that names them is refused, naming the new key)
MOVED_TO_TASKS = {"edge_thickness": ("edge", "thickness"), "edge_targets": ("edge", "targets"),
                  "depth_edges": ("edge", "depth_edges")}

# Keys of earlier config files that are gone, and what took their place (a setting naming one
# is refused with this; a file that has one loads, see _depth_range_from_data).
GONE = {"data.max_depth": "the depth range is the dataset's own now: data.options.max_depth where the dataset "
                          "declares it (synthrooms), else fixed by the dataset (10 m for NYUv2)"}

# Keys of earlier config files and where they live now.
MOVED = {
    **{f"data.{k}": f"data.options.{k}" for k in ("frames", "fractions", "split_seed", "val_frames",
                                                   "classes", "raw_depth", "scene_seed", "holes")},
    "data.split": "data.options.protocol",
    "model.interaction": "model.options.interaction",
    "loss.depth": "loss.names.depth", "loss.seg": "loss.names.seg", "loss.edge": "loss.names.edge",
    "loss.depth_alpha": "loss.options.depth.alpha", "loss.depth_beta": "loss.options.depth.beta",
    "loss.depth_gamma": "loss.options.depth.gamma", "loss.edge_pos_weight": "loss.options.edge.pos_weight",
    "loss.weighting": "weighting.name", "loss.weights": "weighting.options.weights",
    **{f"data.{old}": f"task_options.{task}.{new}" for old, (task, new) in MOVED_TO_TASKS.items()},
}


# What the built-in factories took from the flat sections of config files written before the
# options tables (every such file spelt out every key, whatever the dataset or model).
_LEGACY_DATA_OPTIONS = {
    "synthrooms": ("frames", "protocol", "fractions", "split_seed", "scene_seed", "holes"),
    "nyuv2": ("protocol", "fractions", "split_seed", "val_frames", "classes", "raw_depth"),
    "nyud_mt": ("split_seed", "val_frames"),
}
_LEGACY_LOSS_OPTIONS = {
    "structured_depth": {"depth_alpha": "alpha", "depth_beta": "beta", "depth_gamma": "gamma"},
    "balanced_bce": {"edge_pos_weight": "pos_weight"},
}


_LEGACY_DATA_KEYS = tuple(k.removeprefix("data.") for k in MOVED
                          if k.startswith("data.") and k.removeprefix("data.") not in MOVED_TO_TASKS)
_LEGACY_LOSS_KEYS = tuple(k.removeprefix("loss.") for k in MOVED if k.startswith("loss."))


def _task_options_from_data(data: dict[str, Any], default_tasks: list[str]) -> dict[str, Any]:
    """``[data]`` keys of earlier files that are a task's options now, moved there (dropped where
    the run does not train that task: they did nothing), with one line naming the new spelling."""
    d = data.get("data")
    if not isinstance(d, dict) or not any(k in d for k in MOVED_TO_TASKS):
        return data
    tasks = data.get("tasks", default_tasks)
    options: dict[str, Any] = {k: dict(v) for k, v in data.get("task_options", {}).items()}
    moved = []
    for old, (task, new) in MOVED_TO_TASKS.items():
        if old in d:
            moved.append(f"data.{old} is task_options.{task}.{new}")
            if isinstance(tasks, list) and task in tasks:
                options.setdefault(task, {}).setdefault(new, d[old])
    warnings.warn(f"{'; '.join(moved)} now; the file loads as written", ConfigWarning, stacklevel=3)
    return {**data, "data": {k: v for k, v in d.items() if k not in MOVED_TO_TASKS}, "task_options": options}


def _depth_range_from_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data.max_depth`` of earlier files: the dataset's own range now. Every dataset's range was
    10 m by default, so 10 is dropped; another value becomes the dataset's ``max_depth`` option
    (resolving refuses it, naming the option, where the dataset has no such option)."""
    d = data.get("data")
    if not isinstance(d, dict) or "max_depth" not in d:
        return data
    d = dict(d)
    value = d.pop("max_depth")
    if value != 10.0:
        d["options"] = {"max_depth": value, **d.get("options", {})}
    warnings.warn(f"data.max_depth is gone: {GONE['data.max_depth']}; the file loads as written", ConfigWarning,
                  stacklevel=3)
    return {**data, "data": d}


def renamed(data: dict[str, Any], default_dataset: str) -> dict[str, Any]:
    """A config file's preset and split protocol under their names of today, where the file
    (of an earlier version) names them otherwise; one line for each."""
    if isinstance(data.get("preset"), str):
        data = {**data, "preset": preset_name(data["preset"])}
    d = data.get("data")
    options = d.get("options") if isinstance(d, dict) else None
    if isinstance(d, dict) and isinstance(options, dict) and "protocol" in options:
        protocol = protocol_name(str(d.get("name", default_dataset)), options["protocol"])
        data = {**data, "data": {**d, "options": {**options, "protocol": protocol}}}
    return data


def upgrade_legacy(data: dict[str, Any], default_tasks: list[str], default_dataset: str) -> dict[str, Any]:
    """A whole config written before the options tables (it spells out every flat key of
    ``[data]`` and ``[loss]``) in today's layout, keeping exactly what its run used, so that
    ``eval``, ``compare`` and ``predict`` still read old run directories; ``train.bf16`` of any
    earlier file becomes ``train.precision``. Keys it does not know stay
    where they are, to be refused with the close matches; any other input is returned as it is."""
    data = _depth_range_from_data(_task_options_from_data(data, default_tasks))
    train = data.get("train")
    if isinstance(train, dict) and isinstance(train.get("bf16"), bool) and "precision" not in train:
        # runs before train.precision: bf16 was opt-in, fp32 otherwise
        precision = "bf16" if train["bf16"] else "fp32"
        data = {**data, "train": {k: v for k, v in train.items() if k != "bf16"} | {"precision": precision}}
    d, loss = data.get("data"), data.get("loss")
    if not (isinstance(d, dict) and isinstance(loss, dict) and all(k in d for k in _LEGACY_DATA_KEYS)
            and all(k in loss for k in _LEGACY_LOSS_KEYS)):
        return data
    out = {k: v for k, v in data.items() if k not in ("data", "model", "loss")}
    d = dict(d)
    d["protocol"] = d.pop("split")
    takes = _LEGACY_DATA_OPTIONS.get(str(d.get("name", default_dataset)), ())
    legacy = set(_LEGACY_DATA_KEYS) | {"protocol"}
    out["data"] = {k: v for k, v in d.items() if k not in legacy}
    out["data"]["options"] = {k: d[k] for k in takes if k in d}
    m = dict(data.get("model", {}))
    interaction = m.pop("interaction", "")
    out["model"] = m | ({"options": {"interaction": interaction}} if interaction else {})
    names = {t: loss[t] for t in ("depth", "seg", "edge") if loss[t]}
    options = {t: {new: loss[old] for old, new in _LEGACY_LOSS_OPTIONS.get(n, {}).items()} for t, n in names.items()}
    out["loss"] = {k: v for k, v in loss.items() if k not in _LEGACY_LOSS_KEYS} | {"names": names, "options": options}
    out["weighting"] = {"name": loss["weighting"], "options": {"weights": loss["weights"]} if loss["weights"] else {}}
    return out
