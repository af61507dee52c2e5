"""Runs set beside each other and beside published numbers, protocol by protocol, with Δm.

A run's *protocol* is what decides whether its numbers can share a column with a published
one: the dataset, the split and the class set. Published rows come from
``mtlbench/resources/baselines.json`` (generated from ``reference/baselines.md``); each keeps
its source. A table never puts two protocols in one section: runs of another protocol get their
own table, and published rows of other protocols appear only on request, under their own title.

Δm (multi-task performance against single-task baselines, in %):

    Δm = 1/K · Σ_k (−1)^{l_k} · (M_multi,k − M_single,k) / M_single,k · 100

with l_k = 1 where lower is better. ``mti`` takes one metric per task (K = number of tasks;
depth RMSE, seg mIoU, edge odsF), as MTI-Net and the Vandenhende et al. survey define it;
``all`` takes every metric flat (K = number of metrics), as Nash-MTL and later papers do.

Which metrics enter each variant, their directions, and every column's header and percent flag
come from the metric records (:mod:`mtlbench.metrics.records`: ``key``, ``in_delta_all``,
``higher_is_better``, ``column``/``unit``, ``percent``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mtlbench import config as C
from mtlbench.errors import MtlbenchError
from mtlbench.metrics import records
from mtlbench.metrics.records import MetricRecord
from mtlbench.registry import ensure_populated
from mtlbench.report.tables import TableData
from mtlbench.rundir import RunDir


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    size: str = ""  # the resolution published numbers were evaluated at
    scored: tuple[int, int] | None = None  # a run must have been scored at exactly this (h, w) to stand beside them
    tasks: tuple[str, ...] = ()  # the tasks the published rows trained together, where they must match


NYUD_SCORED = (425, 560)
FOUR_TASKS = ("seg", "depth", "normals", "edge")


PROTOCOLS = {
    "beneath": Protocol("beneath", "NYUv2 labelled set, random 80/10/10 split, 40 classes, 256×256 (the protocol "
                                   "of Beneath the Surface); MAE/RMSE norm. are on depth divided by the maximum "
                                   "depth (10 m here; the paper says only \"normalised to [0, 1]\")", "256×256"),
    "nyud-mt": Protocol("nyud-mt", "NYUD-v2 official 795/654 split, 40 classes, scored at 425×560 (the NYUD-MT frames: "
                                   "rows 45:470, columns 40:600 of the 480×640 frames, without the white border); "
                                   "depth RMSE pooled over the valid test pixels in metres; odsF from the MATLAB "
                                   "SEISM/BSDS toolbox (one-to-one matching, maxDist 0.011)", "425×560", NYUD_SCORED),
    "nyud-mt-4task": Protocol("nyud-mt-4task", "NYUD-MT four tasks (seg, depth, normals, edge trained together), "
                                               "official 795/654 split, 40 classes, scored at 425×560; normals mErr "
                                               "= mean angular error in degrees over valid pixels; odsF from SEISM "
                                               "(maxDist 0.011)", "425×560", NYUD_SCORED, FOUR_TASKS),
    "nyuv2-13-mtan": Protocol("nyuv2-13-mtan", "NYUv2 official split, 13 classes, 288×384 (MTAN protocol); depth "
                                               "abs. err = MAE in metres", "288×384"),
    "eigen-depth": Protocol("eigen-depth", "NYUv2 official 654 test frames, Eigen crop, per-image mean, depth only, "
                                           "extra training data (context only)", "480×640"),
}


def column_records() -> dict[str, MetricRecord]:
    """Every metric a table can show, as ``task/name`` (``seg/iou/<class>`` stands for each class)."""
    return {f"{t}/{r.name}": r for t in records.task_names() for r in records.records_for(t)}


def column_record(key: str) -> MetricRecord | None:
    """The record of a flat key (``depth/rmse``, ``seg/iou/wall``), or ``None``."""
    task, _, metric = key.partition("/")
    return records.find(task, metric)


def known_column_record(key: str) -> MetricRecord:
    """The record of a flat key that has one (Δm keys, checked columns); an error naming the close
    ones otherwise."""
    task, _, metric = key.partition("/")
    return records.lookup(task, metric)


# the columns a protocol's table shows by default (those some row has): a choice per protocol,
# so kept here; each must have a metric record
DEFAULT_COLUMNS = {
    "beneath": ["depth/mae_norm", "depth/rmse_norm", "depth/delta1_beneath", "depth/delta2_beneath",
                "depth/delta3_beneath", "depth/delta1", "depth/rmse", "depth/abs_rel", "depth/dbe_acc",
                "seg/pixel_acc", "seg/miou", "edge/ods"],
    "nyud-mt": ["seg/miou", "seg/pixel_acc", "depth/rmse", "depth/abs_rel", "depth/delta1", "depth/dbe_acc",
                "edge/ods", "edge/ois", "edge/ap"],
    "nyud-mt-4task": ["seg/miou", "depth/rmse", "normals/mean", "normals/median", "normals/within_11.25", "edge/ods",
                      "edge/ois", "edge/ap"],
    "nyuv2-13-mtan": ["seg/miou", "seg/pixel_acc", "depth/mae", "depth/rmse", "depth/abs_rel"],
    "eigen-depth": ["depth/delta1_img", "depth/abs_rel_img", "depth/rmse_img"],
    None: ["depth/rmse", "depth/abs_rel", "depth/delta1", "depth/dbe_acc", "depth/dbe_comp", "seg/miou",
           "seg/pixel_acc", "seg/fwiou", "normals/mean", "normals/median", "normals/within_11.25", "edge/ods",
           "edge/ois", "edge/ap"],
}

DELTA_LABEL = {"mti": "Δm % (MTI-Net: one metric per task)", "all": "Δm % (all metrics, flat mean)"}


@cache
def published_rows() -> tuple[dict[str, Any], ...]:
    text = resources.files("mtlbench.resources").joinpath("baselines.json").read_text()
    return tuple(json.loads(text)["rows"])


# [eval] settings whose defaults every published protocol assumes; a run evaluated otherwise
# follows no published protocol
STANDARD_EVAL = {"min_depth": 1e-3, "max_depth": 0.0, "boundaries": None, "edge_tolerance": 0.011,
                 "edge_thresholds": 99, "edge_nms": True, "edge_matching": None, "resolution": None}


@dataclass
class Run:
    """A finished (or re-evaluated) run directory."""

    path: Path
    config: C.RunConfig
    metrics: dict[str, Any]  # metrics.json

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics.get("tasks") or self.config.tasks)

    @property
    def label(self) -> str:
        return f"{self.config.model.name} [{','.join(self.tasks)}]"

    def split(self, name: str) -> dict[str, dict[str, float]]:
        if not isinstance(self.metrics.get(name), dict):
            raise MtlbenchError(f"{self.path}: metrics.json has no {name} split; run `mtlbench eval {self.path} "
                                f"--split {name}` first")
        return self.metrics[name]

    def eval_settings(self, split: str) -> dict[str, Any]:
        """The ``[eval]`` settings ``split`` was evaluated with (recorded by ``run``/``eval``)."""
        recorded = self.metrics.get("eval", {}).get(split, {})
        return {k: recorded.get(k, v) for k, v in dataclasses.asdict(self.config.eval).items()}

    def custom_eval(self, split: str) -> list[str]:
        """The ``[eval]`` settings of ``split`` that differ from what the published protocols use."""
        used = self.eval_settings(split)
        return [f"{k} {used[k]}" for k, v in STANDARD_EVAL.items() if v is not None and used[k] != v]

    def scored_size(self, split: str) -> tuple[int, int] | None:
        """The (h, w) ``split`` was scored at, as ``metrics.json`` records it (``None``: a file
        from before mtlbench recorded it)."""
        size = self.metrics.get("eval", {}).get(split, {}).get("scored_size")
        return (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None

    def edge_exact(self, split: str) -> bool:
        """Whether ``split``'s edge scores come from one-to-one (BSDS) matching."""
        return self.metrics.get("eval", {}).get(split, {}).get("edge_matching") == "exact"

    def protocol(self, split: str = "test") -> str | None:
        """The published protocol ``split`` can stand beside, or ``None``: the data, split and
        classes of one, its [eval] settings, its task set where it has one, and scored at its
        resolution and pixels."""
        if self.custom_eval(split):
            return None
        name = run_protocol(self.config, bool(self.eval_settings(split)["eigen_crop"]))
        if name == "nyud-mt" and set(FOUR_TASKS) <= set(self.tasks):
            name = "nyud-mt-4task"
        p = PROTOCOLS.get(name) if name else None
        if p is not None and p.scored is not None and self.scored_size(split) != p.scored:
            return None
        return name

    def setting(self, split: str) -> tuple:
        """What must match for one run to serve as another's single-task reference."""
        d = self.config.data
        used = self.eval_settings(split)
        return (d.name, d.root, json.dumps(d.options, sort_keys=True), d.size, self.config.model.backbone,
                tuple(sorted((k, v) for k, v in used.items() if k != "boundaries")))


def load_run(path: Path) -> Run:
    """Config and metrics of a run directory; one clear error line when it is not one."""
    path = Path(path)
    rd = RunDir(path)
    if not rd.is_run():
        raise MtlbenchError(f"{path} is not an mtlbench run directory (no config.toml)")
    if not rd.metrics.is_file():
        raise MtlbenchError(f"{path} has no metrics.json (the run did not finish): run `mtlbench eval {path}` "
                            f"to evaluate its best checkpoint")
    try:
        metrics = json.loads(rd.metrics.read_text())
    except ValueError as exc:
        raise MtlbenchError(f"{path / 'metrics.json'} is not valid JSON ({exc}): run `mtlbench eval {path}` "
                            f"to write it again") from None
    if not isinstance(metrics, dict):
        raise MtlbenchError(f"{path / 'metrics.json'} is not an mtlbench metrics file: run `mtlbench eval {path}` "
                            f"to write it again")
    return Run(path, C.load(rd.config), metrics)


def run_protocol(cfg: Any, eigen_crop: bool | None = None) -> str | None:
    """The published protocol a run's numbers can stand beside, or ``None`` (synthrooms, …)."""
    d = cfg.data
    eigen_crop = cfg.eval.eigen_crop if eigen_crop is None else eigen_crop
    if d.name not in ("nyuv2", "nyud_mt"):
        return None
    protocol, classes = _split_and_classes(d)
    if protocol == "official":
        if eigen_crop:
            return "eigen-depth"
        return {40: "nyud-mt", 13: "nyuv2-13-mtan"}.get(classes)
    if protocol == "random" and classes == 40 and not eigen_crop:
        return "beneath"
    return None


def _split_and_classes(d: Any) -> tuple[str, int]:
    """The split protocol and class count of a run's dataset (NYUD-MT: the official split, 40 classes)."""
    if d.name == "nyud_mt":
        return "official", 40
    return d.options.get("protocol", "random"), d.options.get("classes", 40)


def run_setting(cfg: Any) -> str:
    d = cfg.data
    protocol, n = _split_and_classes(d)
    split = "random 80/10/10" if protocol == "random" else "official 795/654"
    classes = f", {n} classes" if d.name != "synthrooms" else ""
    return f"{d.name}, {split}{classes}, {d.size}×{d.size}"


def flat(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{"depth": {"rmse": …}}`` → ``{"depth/rmse": …}``."""
    return {f"{t}/{k}": v for t, values in metrics.items() if t != "total" and isinstance(values, dict)
            for k, v in values.items() if isinstance(v, (int, float))}


def delta_keys(tasks: Sequence[str], variant: str) -> list[str]:
    """The flat keys Δm ``variant`` averages over: each task's key metric (``mti``) or all its
    metrics marked ``in_delta_all`` (``all``); a task without records adds none."""
    if variant not in DELTA_LABEL:
        raise MtlbenchError(f"unknown Δm variant {variant!r}: choose mti or all")
    wanted = "key" if variant == "mti" else "in_delta_all"
    return [f"{t}/{r.name}" for t in tasks for r in records.records_for(t) if getattr(r, wanted)]


def delta_m(multi: dict[str, float], singles: dict[str, float], tasks: Sequence[str], variant: str) -> float | None:
    """Δm in % of flat metrics ``multi`` against ``singles`` (see the module docstring); ``None``
    when a metric it needs is missing on either side or is 0 in the reference."""
    keys = delta_keys(tasks, variant)
    if not keys or any(k not in multi or k not in singles or singles[k] == 0 for k in keys):
        return None
    sign = {k: 1 if known_column_record(k).higher_is_better else -1 for k in keys}
    terms = [(multi[k] - singles[k]) / singles[k] * sign[k] for k in keys]
    return 100 * sum(terms) / len(terms)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    record = column_record(key)
    return f"{100 * value:.2f}" if record is not None and record.percent else f"{value:.4f}"


def single_task_references(runs: Sequence[Run], split: str) -> dict[tuple, Run]:
    """For each (setting, task): the first one-task run with that setting (:meth:`Run.setting`)."""
    found: dict[tuple, Run] = {}
    for r in runs:
        if len(r.tasks) == 1:
            found.setdefault((r.setting(split), r.tasks[0]), r)
    return found


def comparison_tables(runs: Sequence[Run], split: str = "test", published: bool = True,
                      other_protocols: bool = False, delta: Sequence[str] = ("mti",),
                      baselines: Sequence[Run] = (), columns: Sequence[str] | None = None) -> list[TableData]:
    """One table per protocol among ``runs``, each run beside the published rows of its protocol.

    Args:
        runs: the runs to tabulate.
        split: which split of their ``metrics.json``.
        published: add the published rows of the same protocol.
        other_protocols: also list published rows of protocols no run follows, in their own tables.
        delta: the Δm variants to add as columns (``mti``, ``all``).
        baselines: one-task runs serving as Δm references (one-task runs among ``runs`` serve too);
            a reference serves a run only with the same data, resolution, backbone and ``[eval]``
            settings.
        columns: metric keys (``depth/rmse``) instead of the protocol's default columns.
    """
    for key in columns or ():
        if column_record(key) is None:
            raise MtlbenchError(f"unknown column {key!r}: choose from {', '.join(column_records())}")
    for b in baselines:
        if len(b.tasks) != 1:
            raise MtlbenchError(f"baseline {b.path} trains {', '.join(b.tasks)}: a Δm reference is a one-task run")
        b.split(split)
    refs = single_task_references(list(baselines) + list(runs), split)
    groups: dict[str | None, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.protocol(split), []).append(r)
    tables = []
    for protocol, members in groups.items():
        tables.append(_protocol_table(protocol, members, split, published, delta, refs, columns))
    if other_protocols:
        for name in PROTOCOLS:
            if name not in groups:
                tables.append(_protocol_table(name, [], split, True, (), {}, columns))
    return tables


def _other_task_columns(defaults: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of tasks the protocol's defaults do not cover (a plugin's): every metric of
    theirs with a direction that its records put in the console table, in that order."""
    covered = {k.partition("/")[0] for k in defaults}
    others = [t for t in dict.fromkeys(k.partition("/")[0] for m in rows for k in m if "/" in k) if t not in covered]
    if others:
        ensure_populated()  # a plugin's records come with its entries
    out = []
    for task in others:
        chosen = [r for r in records.records_for(task) if r.order is not None and r.higher_is_better is not None]
        out += [f"{task}/{r.name}" for r in sorted(chosen, key=lambda r: r.order or 0)]
    return out


def _protocol_table(protocol: str | None, runs: Sequence[Run], split: str, published: bool, delta: Sequence[str],
                    refs: dict[tuple, Run], columns: Sequence[str] | None) -> TableData:
    rows_raw: list[tuple[str, str, dict[str, float], str]] = []  # model, backbone, metrics, source
    delta_values: list[dict[str, float | None]] = []
    notes: list[str] = []
    used_refs: dict[str, str] = {}
    for r in runs:
        m = flat(r.split(split))
        custom = r.custom_eval(split)
        setting = run_setting(r.config) + (f"; eval {', '.join(custom)}" if custom else "")
        rows_raw.append((r.label, r.config.model.backbone, m, f"{r.path} ({split}, {setting})"))
        same = r.setting(split)
        mine = {t: refs[(same, t)] for t in r.tasks if (same, t) in refs}
        values: dict[str, float | None] = {v: None for v in delta}
        if len(r.tasks) > 1 and len(mine) == len(r.tasks):
            reference = {k: v for ref in mine.values() for k, v in flat(ref.split(split)).items()}
            values = {v: delta_m(m, reference, r.tasks, v) for v in delta}
            used_refs.update({t: str(ref.path) for t, ref in mine.items()})
        delta_values.append(values)
    n_runs = len(rows_raw)
    pub = [row for row in published_rows() if row["protocol"] == protocol] if published and protocol else []
    for row in pub:
        source = row["source"] + (f"; {row['note']}" if row.get("note") else "")
        rows_raw.append((row["model"], row["backbone"], row["metrics"], source))
    wanted = list(columns) if columns else DEFAULT_COLUMNS[protocol] + _other_task_columns(
        DEFAULT_COLUMNS[protocol], [m for _, _, m, _ in rows_raw])
    keys = [k for k in wanted if any(k in m for _, _, m, _ in rows_raw)]
    shown = [known_column_record(k) for k in keys]
    header = ["model", "backbone"] + [f"{r.header} {r.arrow}".rstrip() for r in shown]
    header += [DELTA_LABEL[v] + " ↑" for v in delta] + ["source"]
    rows, raw = [], []
    for i, (model, backbone, m, source) in enumerate(rows_raw):
        d = delta_values[i] if i < n_runs else {v: None for v in delta}
        rows.append([model, backbone] + [_fmt(k, m.get(k)) for k in keys]
                    + ["–" if d[v] is None else f"{d[v]:+.2f}" for v in delta] + [source])
        raw.append({"model": model, "backbone": backbone, "source": source, "published": i >= n_runs,
                    "metrics": {k: m[k] for k in keys if k in m}, **{f"delta_m_{v}": d[v] for v in delta}})
    if protocol is None:
        title = f"{split} metrics: {run_setting(runs[0].config) if runs else ''} (no published protocol)"
        if any(r.custom_eval(split) for r in runs):
            notes.append("Evaluated with [eval] settings no published protocol uses (see the source column), "
                         "so no published numbers are shown.")
        elif any(run_protocol(r.config) for r in runs):
            notes.append("The data follows a published protocol, but the split was not scored at that protocol's "
                         "resolution and pixels (e.g. scored at the input resolution, or an older metrics.json): "
                         "re-evaluate with `mtlbench eval RUN_DIR` to score it there.")
        else:
            notes.append("No published numbers share this protocol, so none are shown.")
    else:
        p = PROTOCOLS[protocol]
        title = f"{split} metrics, protocol {protocol}: {p.description}"
        if runs and pub and p.scored is None:  # (scored protocols admit only runs scored at their size)
            sizes = sorted({f"{r.config.data.size}×{r.config.data.size}" for r in runs})
            if p.size not in sizes:
                notes.append(f"Runs evaluated at {', '.join(sizes)}; published rows at {p.size}.")
    notes.append("Pooled metrics count every valid pixel of the split; /img columns average per image.")
    if any(k.startswith("edge/") for k in keys) and runs:
        exact = [r.edge_exact(split) for r in runs]
        if all(exact):
            notes.append("odsF/oisF/AP of runs: exact one-to-one matching as BSDS correspondPixels, thinned per "
                         "threshold (docs/evaluation.md), in Python rather than the MATLAB toolbox.")
        else:
            notes.append("APPROXIMATE odsF/oisF/AP for runs scored with fast many-to-one matching (higher than "
                         "one-to-one, docs/evaluation.md): " + ", ".join(r.label for r, e in zip(runs, exact) if not e)
                         + "; re-evaluate with `mtlbench eval RUN_DIR --edge-matching exact` before citing them.")
    if delta:
        notes.append("Δm against one-task runs with the same data, resolution, backbone and [eval] settings"
                     + (f" ({'; '.join(f'{t}: {p}' for t, p in used_refs.items())})" if used_refs else "")
                     + "; – where a task has no such run. " + " ".join(f"{DELTA_LABEL[v]}." for v in delta))
    sections = [n_runs] if pub and n_runs else []
    return TableData(title, " ".join(notes), header, rows, sections, raw)


def per_class_table(runs: Sequence[Run], split: str = "test") -> TableData:
    """IoU per class (rows) and run (columns), in %; classes in the order of the first run's metrics."""
    names: list[str] = []
    for r in runs:
        for k in r.split(split).get("seg", {}):
            if k.startswith("iou/") and k[4:] not in names:
                names.append(k[4:])
    if not names:
        raise MtlbenchError("no run has per-class IoU in its metrics: train or evaluate seg first "
                            "(`mtlbench eval RUN_DIR`)")
    header = ["class"] + [f"{r.label} {r.path.name}" for r in runs]
    rows = [[n] + [_fmt(f"seg/iou/{n}", r.split(split).get("seg", {}).get(f"iou/{n}")) for r in runs] for n in names]
    raw = [{"class": n, **{str(r.path): r.split(split).get("seg", {}).get(f"iou/{n}") for r in runs}} for n in names]
    return TableData(f"{split} IoU per class (%)", "– : the class occurs in neither ground truth nor prediction.",
                     header, rows, [], raw)
