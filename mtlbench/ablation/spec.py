"""Sweep specifications: a TOML file naming a base configuration, axes, rows, seeds and the
single-task references, read into :class:`Spec` with every structural problem one error line.

    name = "seed_guidance"
    preset = "quick"                       # or: config = "path/config.toml" (relative to the spec)
    seeds = [0, 1, 2]
    columns = ["depth/rmse", "seg/miou"]   # default: each task's key metric
    compare_to = "both"                    # significance against this row (Welch's t-test over seeds)
    combine = "grid"                       # axes as a grid (default) or zipped

    [base]                                 # any run setting, laid over the preset
    model.name = "mtinet"

    [references]                           # one-task runs for Δm (omit for no Δm)
    tasks = ["depth", "seg", "edge"]       # default: the base's tasks
    set = { "model.name" = "hps" }         # their settings beyond the base
    follow = []                            # cell keys a reference takes too (data, eval, backbone always)

    [[rows]]                               # named cells that are not a grid
    name = "no guidance"
    set = { "model.options.guidance" = [] }

    [[axes]]
    key = "weighting.name"
    values = ["fixed", "dwa"]

    [executor]                             # --executor slurm: submitit's Slurm parameters
    partition = "gpu"

Cells are the rows (one unnamed row when there are none) times the axes' combinations. Settings are
dotted configuration keys; whether a key and value exist is checked when the plan resolves each
cell (:mod:`mtlbench.ablation.plan`), before anything runs. This module is torch-free.
"""

from __future__ import annotations

import difflib
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mtlbench.errors import MtlbenchError
from mtlbench.spellings import preset_name

TOP_KEYS = ("name", "title", "description", "preset", "config", "seeds", "columns", "compare_to", "combine",
            "delta", "published_source", "base", "references", "rows", "axes", "executor")
COMBINE = ("grid", "zip")
DELTA = ("mti", "all")
# cell keys every reference takes from its cell: what decides whether a one-task run is a fair
# reference (the data, the resolution, the encoder, how it is scored)
ALWAYS_FOLLOW = ("data.", "eval.", "model.backbone", "model.width", "model.pretrained", "model.weights")
# submitit's Slurm parameters a spec may set under [executor]
EXECUTOR_KEYS = {"partition": "slurm_partition", "time": "timeout_min", "gpus_per_node": "gpus_per_node",
                 "cpus_per_task": "cpus_per_task", "mem_gb": "mem_gb", "array_parallelism": "slurm_array_parallelism",
                 "account": "slurm_account", "qos": "slurm_qos", "constraint": "slurm_constraint"}

Settings = dict[str, Any]  # dotted configuration key → value


@dataclass(frozen=True)
class Cell:
    """One setting of the sweep: its label, the row it belongs to and its dotted settings."""

    label: str
    settings: Settings
    row: str = ""  # the row's name ("" without rows)
    axes: tuple[tuple[str, Any], ...] = ()  # (axis name, value) in axis order
    published: dict[str, float] = field(default_factory=dict)  # metric key → a paper's number, shown beside


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    name: str  # short, for labels and plots


@dataclass
class References:
    tasks: list[str]
    set: Settings = field(default_factory=dict)
    follow: tuple[str, ...] = ()


@dataclass
class Spec:
    name: str
    path: Path
    text: str  # the file as read, kept with the sweep
    title: str
    preset: str
    config: Path | None
    seeds: list[int]
    base: Settings
    cells: list[Cell]
    axes: list[Axis]
    references: References | None
    columns: list[str]
    compare_to: str
    delta: list[str]
    executor: dict[str, Any]
    published_source: str = ""


def flatten(table: Mapping[str, Any], prefix: str = "") -> Settings:
    """Nested tables as dotted keys (``{"model": {"name": x}}`` → ``{"model.name": x}``); a key
    quoted with dots in it stays one key. Tables under ``options``/``names`` keep being flattened,
    so a cell can set one option without repeating the others."""
    out: Settings = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _fail(path: Path, message: str) -> MtlbenchError:
    return MtlbenchError(f"{path}: {message}")


def _table(data: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(path, f"{where} must be a table, got {data!r}")
    return data


def _settings(data: Any, where: str, path: Path) -> Settings:
    return flatten(_table(data, where, path))


def _short(key: str) -> str:
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def value_label(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(value_label(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _array_of_tables(data: Any, section: str, keys: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    """``[[section]]`` entries, each a table of only ``keys``."""
    if not isinstance(data, list):
        raise _fail(path, f"{section} must be an array of tables ([[{section}]]), got {data!r}")
    tables = [_table(t, f"{section}[{i}]", path) for i, t in enumerate(data)]
    for i, t in enumerate(tables):
        unknown = [k for k in t if k not in keys]
        if unknown:
            raise _fail(path, f"{section}[{i}]: unknown key {unknown[0]!r} (it takes {', '.join(keys)})")
    return tables


def _axes(data: Any, path: Path) -> list[Axis]:
    axes: list[Axis] = []
    for i, a in enumerate(_array_of_tables(data, "axes", ("key", "values", "labels", "name"), path)):
        key, values = a.get("key"), a.get("values")
        if not isinstance(key, str) or not key:
            raise _fail(path, f"axes[{i}] needs key = \"SECTION.SETTING\", e.g. \"weighting.name\"")
        if isinstance(values, dict):
            values = _registered(values, key, path)
        if not isinstance(values, list) or not values:
            raise _fail(path, f"axis {key!r} has no values: give values = [...] with at least one")
        labels = a.get("labels", [value_label(v) for v in values])
        if not isinstance(labels, list) or len(labels) != len(values) or not all(isinstance(x, str) for x in labels):
            raise _fail(path, f"axis {key!r}: labels must be {len(values)} strings, one per value")
        if len(set(labels)) != len(labels):
            raise _fail(path, f"axis {key!r} has values that read alike ({', '.join(labels)}): each value once, "
                        f"or labels = [...] that tell them apart")
        if any(x.key == key for x in axes):
            raise _fail(path, f"axis {key!r} is given twice")
        axes.append(Axis(key, tuple(values), tuple(labels), str(a.get("name", _short(key)))))
    return axes


def _registered(values: dict[str, Any], key: str, path: Path) -> list[str]:
    """``values = { registered = "weightings", exclude = [...] }``: every name registered of that
    kind when the sweep is planned, installed plugins included."""
    from mtlbench.registry import REGISTRIES, registry

    kind, exclude = values.get("registered"), values.get("exclude", [])
    if set(values) - {"registered", "exclude"} or kind not in REGISTRIES or not isinstance(exclude, list):
        raise _fail(path, f"axis {key!r}: values must be a list, or {{ registered = KIND, exclude = [...] }} with "
                    f"KIND one of {', '.join(REGISTRIES)}")
    return [n for n in registry(kind).names() if n not in exclude]


Row = tuple[str, Settings, bool, dict[str, float]]  # name, settings, crossed with the axes, published


def _rows(data: Any, path: Path) -> list[Row]:
    """Each row as a :data:`Row`."""
    rows: list[Row] = []
    for i, r in enumerate(_array_of_tables(data, "rows", ("name", "set", "axes", "published"), path)):
        name = r.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(path, f"rows[{i}] needs a name")
        if any(row[0] == name for row in rows):
            raise _fail(path, f"row {name!r} is given twice")
        crossed = r.get("axes", True)
        if not isinstance(crossed, bool):
            raise _fail(path, f"row {name!r}: axes must be true (crossed with the axes) or false (on its own)")
        published = _table(r.get("published", {}), f"row {name!r} published", path)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in published.values()):
            raise _fail(path, f"row {name!r}: published maps metric keys to numbers, "
                        f"e.g. {{ \"seg/pixel_acc\" = 0.6 }}")
        rows.append((name, _settings(r.get("set", {}), f"row {name!r} set", path), crossed,
                     {k: float(v) for k, v in published.items()}))
    return rows


def _cells(rows: list[Row], axes: list[Axis], combine: str, path: Path) -> list[Cell]:
    """Rows crossed with the axes' combinations (one unnamed row when no row is crossed); a row
    with ``axes = false`` is one cell of its own."""
    if combine == "zip":
        lengths = {len(a.values) for a in axes}
        if len(lengths) > 1:
            raise _fail(path, "combine = \"zip\" needs axes of one length; got "
                        + ", ".join(f"{a.key}: {len(a.values)}" for a in axes))
        combos = [tuple(zip(axes, [a.values[i] for a in axes], [a.labels[i] for a in axes]))
                  for i in range(lengths.pop() if lengths else 1)]
    else:
        combos = [tuple(zip(axes, values, labels)) for values, labels in
                  zip(itertools.product(*(a.values for a in axes)), itertools.product(*(a.labels for a in axes)))]
    cells = [Cell(name, settings, name, (), published) for name, settings, crossed, published in rows
             if not crossed or not axes]
    crossed_rows = [(name, settings, published) for name, settings, crossed, published in rows if crossed and axes] \
        or ([("", {}, {})] if axes or not rows else [])
    for row, settings, published in crossed_rows:
        for combo in combos:
            merged = dict(settings)
            for axis, value, _ in combo:
                if axis.key in merged:
                    raise _fail(path, f"row {row!r} and axis {axis.key!r} both set {axis.key}: keep one")
                merged[axis.key] = value
            parts = ([row] if row else []) + [f"{axis.name}={label}" for axis, _, label in combo]
            cells.append(Cell(", ".join(parts) or "base", merged, row, tuple((a.name, v) for a, v, _ in combo),
                              published))
    return cells


def _seeds(data: Any, path: Path) -> list[int]:
    if not isinstance(data, list) or not data or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                         for s in data):
        raise _fail(path, f"seeds must be a non-empty list of non-negative integers, got {data!r}")
    repeated = sorted({s for s in data if data.count(s) > 1})
    if repeated:
        raise _fail(path, f"seeds repeat {', '.join(map(str, repeated))}: each seed once")
    return list(data)


def load_spec(path: str | Path) -> Spec:
    """Read and check a sweep spec's structure; any problem is one :class:`MtlbenchError` line."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise MtlbenchError(f"sweep spec {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MtlbenchError(f"cannot read sweep spec {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MtlbenchError(f"sweep spec {path} is not valid TOML: {exc}") from None
    for key in data:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1)
            raise _fail(path, f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; a sweep spec has {', '.join(TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail(path, f"name must be a non-empty string without '/', got {name!r}")
    if "preset" in data and "config" in data:
        raise _fail(path, "preset and config both give the base configuration: keep one")
    config = None
    if "config" in data:
        if not isinstance(data["config"], str):
            raise _fail(path, f"config must be a path, got {data['config']!r}")
        config = (path.parent / data["config"]).resolve()
        if not config.is_file():
            raise _fail(path, f"config {config} not found")
    preset = data.get("preset", "beneath")
    if not isinstance(preset, str):
        raise _fail(path, f"preset must be a string, got {preset!r}")
    preset = preset_name(preset)
    combine = data.get("combine", "grid")
    if combine not in COMBINE:
        raise _fail(path, f"combine {combine!r} is not one of {', '.join(COMBINE)}")
    delta = data.get("delta", list(DELTA))
    if not isinstance(delta, list) or any(d not in DELTA for d in delta):
        raise _fail(path, f"delta must list Δm variants among {', '.join(DELTA)}, got {delta!r}")
    columns = data.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _fail(path, f"columns must be a list of metric keys like \"depth/rmse\", got {columns!r}")
    base = _settings(data.get("base", {}), "base", path)
    axes = _axes(data.get("axes", []), path)
    rows = _rows(data.get("rows", []), path)
    cells = _cells(rows, axes, combine, path)
    labels = [c.label for c in cells]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise _fail(path, f"two cells are labelled {repeated[0]!r}: rename the row or give the axis labels")
    compare_to = data.get("compare_to", "")
    if compare_to and compare_to not in labels:
        close = difflib.get_close_matches(str(compare_to), labels, n=1)
        raise _fail(path, f"compare_to {compare_to!r} is not a cell" + (f" (did you mean {close[0]!r}?)" if close
                                                                        else f"; cells: {', '.join(labels)}"))
    references = None
    if "references" in data:
        r = _table(data["references"], "references", path)
        unknown = [k for k in r if k not in ("tasks", "set", "follow")]
        if unknown:
            raise _fail(path, f"references: unknown key {unknown[0]!r} (references have tasks, set, follow)")
        tasks = r.get("tasks", base.get("tasks", []))
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise _fail(path, f"references.tasks must be a list of task names, got {tasks!r}")
        follow = r.get("follow", [])
        if not isinstance(follow, list) or not all(isinstance(k, str) for k in follow):
            raise _fail(path, f"references.follow must be a list of setting keys, got {follow!r}")
        references = References(list(tasks), _settings(r.get("set", {}), "references.set", path),
                                tuple(ALWAYS_FOLLOW) + tuple(follow))
    executor = _table(data.get("executor", {}), "executor", path)
    for key in executor:
        if key not in EXECUTOR_KEYS:
            close = difflib.get_close_matches(key, EXECUTOR_KEYS, n=1)
            raise _fail(path, f"executor: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; it takes {', '.join(EXECUTOR_KEYS)}")
    title = data.get("title", data.get("description", name))
    return Spec(name, path, text, str(title), preset, config, _seeds(data.get("seeds", [0]), path), base, cells,
                axes, references, list(columns), str(compare_to), list(delta), dict(executor),
                str(data.get("published_source", "")))
