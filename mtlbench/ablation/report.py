"""A sweep's table and figure from its finished runs: mean ± std over seeds, Δm against the
declared single-task references, the best value per column, and Welch's t-test against a
reference row.

Why Welch's t-test and not a bootstrap: sweeps have 3–5 seeds, and a bootstrap over 3 values has
only 10 distinct resamples, so its interval is far too narrow; the t distribution accounts for
the few samples, and Welch's form does not assume two settings vary alike. The p-values of a
column are Holm-corrected over the rows compared, since a sweep tests many rows at once. With
so few seeds only large effects can show: "no mark" reads "not shown to differ", not "equal".

Torch-free: ``--report-only`` and the tests read runs without building a model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlbench.ablation.plan import Job, Plan, error_of, state, test_result
from mtlbench.errors import MtlbenchError
from mtlbench.metrics import records
from mtlbench.report.results import DELTA_LABEL, column_record, delta_m, flat, known_column_record
from mtlbench.report.tables import TableData

ALPHA = 0.05
REFERENCE_ROW = "single-task references"


@dataclass
class Row:
    """One cell (or the references) over its seeds."""

    label: str
    values: dict[str, list[float]] = field(default_factory=dict)  # column → per-seed values
    seeds: list[int] = field(default_factory=list)  # seeds with a finished run
    planned: int = 0
    notes: list[str] = field(default_factory=list)  # failed or missing seeds


def default_columns(plan: Plan) -> list[str]:
    """Each task's key metric, tasks in the order cells first name them."""
    tasks: list[str] = []
    for t in plan.tasks.values():
        tasks += [x for x in t if x not in tasks]
    return [f"{t}/{records.key_metric(t)}" for t in tasks if records.records_for(t)]


def check_columns(columns: Sequence[str], where: str) -> None:
    for key in columns:
        if column_record(key) is None:
            try:
                known_column_record(key)
            except MtlbenchError as exc:
                raise MtlbenchError(f"{where}: column {key!r}: {exc}") from None


def _missing_note(job: Job) -> str:
    s = state(job)
    if s == "failed":
        error = error_of(job)
        return f"seed {job.seed} failed ({error if len(error) <= 160 else error[:157] + '...'})"
    return f"seed {job.seed} {'unfinished' if s in ('partial', 'corrupt') else 'not run'}"


def _mean_flat(jobs: Sequence[Job]) -> tuple[dict[str, float], int]:
    """Metrics averaged over the finished runs among ``jobs``, and how many finished."""
    found = [flat(m) for m in (test_result(j) for j in jobs) if m is not None]
    keys = set().union(*found) if found else set()
    return {k: statistics.fmean(f[k] for f in found if k in f) for k in keys}, len(found)


def collect(plan: Plan, columns: Sequence[str]) -> tuple[list[Row], Row | None, list[str]]:
    """The cells' rows, the reference row (when every cell shares one set of references) and
    notes on the references."""
    notes: list[str] = []
    refs: dict[str, dict[str, float]] = {}
    for label, by_task in plan.references.items():
        mean: dict[str, float] = {}
        for task, jobs in by_task.items():
            values, n = _mean_flat(list(jobs.values()))
            mean.update({k: v for k, v in values.items() if k.startswith(task + "/")})
            if n < len(jobs):
                notes.append(f"the {task} reference of {label!r} has {n}/{len(jobs)} seeds")
        refs[label] = mean
    rows = []
    for label, jobs in plan.cells.items():
        row = Row(label, {c: [] for c in columns}, planned=len(jobs))
        deltas: dict[str, list[float]] = {v: [] for v in plan.spec.delta} if label in refs else {}
        for seed, job in jobs.items():
            m = test_result(job)
            if m is None:
                row.notes.append(_missing_note(job))
                continue
            values = flat(m)
            row.seeds.append(seed)
            for c in columns:
                if c in values:
                    row.values[c].append(values[c])
            for v in deltas:
                d = delta_m(values, refs[label], plan.tasks[label], v)
                if d is not None:
                    deltas[v].append(d)
        row.values.update({f"delta/{v}": d for v, d in deltas.items()})
        rows.append(row)
    shared = {tuple(sorted(j.run_dir for by_seed in by_task.values() for j in by_seed.values()))
              for by_task in plan.references.values()}
    reference = None
    if len(shared) == 1:
        by_task = next(iter(plan.references.values()))
        reference = Row(REFERENCE_ROW, {c: [] for c in columns}, planned=len(plan.spec.seeds))
        finished: list[set[int]] = []
        for task, jobs in by_task.items():
            finished.append(set())
            for job in jobs.values():
                m = test_result(job)
                if m is None:
                    continue
                finished[-1].add(job.seed)
                for c in (c for c in columns if c.startswith(task + "/")):
                    if c in flat(m):
                        reference.values[c].append(flat(m)[c])
        reference.seeds = sorted(set.intersection(*finished)) if finished else []  # seeds every task finished
    return rows, reference, notes


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test, or ``None`` with fewer than 2 values a side or no spread."""
    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return None
    from scipy.stats import ttest_ind

    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the p-values given (``None`` stays ``None``)."""
    given = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(given):
        running = max(running, min(1.0, (len(given) - rank) * p))
        out[i] = running
    return out


def _higher_better(column: str) -> bool:
    return True if column.startswith("delta/") else bool(known_column_record(column).higher_is_better)


def _digits(column: str) -> tuple[float, int]:
    if column.startswith("delta/"):
        return 1.0, 2
    r = column_record(column)
    return (100.0, 2) if r is not None and r.percent else (1.0, 4)


def _cell(column: str, values: Sequence[float]) -> str:
    if not values:
        return "–"
    scale, digits = _digits(column)
    mean = statistics.fmean(values) * scale
    sign = "+" if column.startswith("delta/") else ""
    if len(values) < 2:
        return f"{mean:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _header(column: str) -> str:
    if column.startswith("delta/"):
        return f"Δm % ({column.split('/')[1]}) ↑"
    r = known_column_record(column)
    return f"{r.task} {r.header} {r.arrow}".rstrip()


def sweep_table(plan: Plan, columns: Sequence[str], command: str = "") -> TableData:
    """The sweep as a table: one row per cell (after the references, where they are shared),
    mean ± std over seeds per column, Δm, n, the best of each column in bold, † against
    ``compare_to``."""
    spec = plan.spec
    rows, reference, ref_notes = collect(plan, columns)
    cols = list(columns) + [f"delta/{v}" for v in spec.delta if plan.references]
    published = list(dict.fromkeys(k for c in spec.cells for k in c.published))
    header = ["setting", *(_header(c) for c in cols), *(f"published {_header(k)}" for k in published), "seeds"]
    by_label = {c.label: c.published for c in spec.cells}
    table_rows: list[list[str]] = []
    raw: list[dict[str, Any]] = []
    bold: set[tuple[int, int]] = set()
    offset = 0
    if reference is not None:
        table_rows.append([reference.label, *(_cell(c, reference.values.get(c, [])) if not c.startswith("delta/")
                                              else "0" for c in cols), *("–" for _ in published),
                           f"{len(reference.seeds)}/{reference.planned}"])
        raw.append({"setting": reference.label, "reference": True, "seeds": reference.seeds,
                    "values": {c: reference.values.get(c, []) for c in columns}})
        offset = 1
    compared = next((r for r in rows if r.label == spec.compare_to), None)
    adjusted: dict[str, list[float | None]] = {}
    raw_p: dict[str, list[float | None]] = {}
    if compared is not None:
        for c in cols:
            raw_p[c] = [None if r is compared else welch_p(r.values.get(c, []), compared.values.get(c, []))
                        for r in rows]
            adjusted[c] = holm(raw_p[c])
    for i, r in enumerate(rows):
        cells = []
        for c in cols:
            text = _cell(c, r.values.get(c, []))
            p = adjusted.get(c, [None] * len(rows))[i]
            cells.append(text + ("†" if p is not None and p < ALPHA else ""))
        paper = [_cell(k, [by_label[r.label][k]]) if k in by_label[r.label] else "–" for k in published]
        table_rows.append([r.label, *cells, *paper, f"{len(r.seeds)}/{r.planned}" + ("*" if r.notes else "")])
        raw.append({"setting": r.label, "seeds": r.seeds, "planned": r.planned, "notes": r.notes,
                    "values": {c: r.values.get(c, []) for c in cols},
                    "mean": {c: statistics.fmean(v) for c in cols if (v := r.values.get(c, []))},
                    "std": {c: statistics.stdev(v) for c in cols if len(v := r.values.get(c, [])) > 1},
                    **({"p_welch": {c: raw_p[c][i] for c in cols}, "p_holm": {c: adjusted[c][i] for c in cols}}
                       if compared is not None else {})})
    for j, c in enumerate(cols):
        means = [(statistics.fmean(v), i) for i, r in enumerate(rows) if (v := r.values.get(c, []))]
        if len(means) > 1:
            best = max(means)[0] if _higher_better(c) else min(means)[0]
            for m, i in means:
                if m == best:
                    bold.add((i + offset, j + 1))
                    raw[i + offset].setdefault("best", []).append(c)
    notes = [f"Mean ± sample std over seeds {', '.join(map(str, spec.seeds))} (test split); bold: the best "
             "mean of each column."]
    if plan.references:
        notes.append("Δm (%) per seed against the single-task references' mean over their seeds, then "
                     "averaged: " + "; ".join(DELTA_LABEL[v] for v in spec.delta) + ".")
    tested = sorted({sum(p is not None for p in ps) for ps in raw_p.values()} - {0})
    if compared is not None and tested:
        count = f"{tested[0]}" if len(tested) == 1 else f"{tested[0]}–{tested[-1]}"
        notes.append(f"†: differs from {compared.label!r} by Welch's t-test over seeds, p < {ALPHA} after Holm's "
                     f"correction over the {count} rows compared in the column.")
    elif compared is not None:
        notes.append(f"No significance test against {compared.label!r}: it needs at least 2 seeds a side.")
    failed = [f"{r.label}: {'; '.join(r.notes)}" for r in rows if r.notes]
    if failed:
        notes.append("* missing seeds, not averaged: " + " | ".join(failed) + ".")
    notes += [n[0].upper() + n[1:] + "." for n in ref_notes]
    if published:
        notes.append(f"Published: {spec.published_source or 'as the spec gives them'} (their own protocols, not "
                     f"this one).")
    if command:
        notes.append(f"Command: {command}")
    return TableData(spec.title, " ".join(notes), header, table_rows, [offset] if offset else [], raw, bold)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sweep_figure(plan: Plan, columns: Sequence[str]) -> Any:
    """One panel per column: the mean against the first axis (or the rows), one line per value
    of the rest, error bars one std."""
    import matplotlib
    import numpy as np

    from mtlbench.report.plotting import STYLE, new_figure

    spec = plan.spec
    rows, reference, _ = collect(plan, columns)
    by_label = {r.label: r for r in rows}
    cols = list(columns) + [f"delta/{v}" for v in spec.delta if plan.references]
    if spec.axes:
        first = spec.axes[0]
        xs_labels = list(first.labels)
        numeric = all(_is_number(v) for v in first.values)
        xlabel = first.name
    else:
        xs_labels = [c.label for c in spec.cells]
        numeric, xlabel = False, "setting"
    series: dict[str, list[tuple[int, Any]]] = {}  # line → (x index, row)
    alone = [by_label[c.label] for c in spec.cells if spec.axes and not c.axes]  # rows outside the axes
    for cell in spec.cells:
        if spec.axes and not cell.axes:
            continue
        if spec.axes:
            x = cell.axes[0][1]
            xi = list(first.values).index(x)
            rest = ([cell.row] if cell.row else []) + [f"{n}={v}" for n, v in cell.axes[1:]]
            name = ", ".join(rest) or spec.name
        else:
            xi, name = xs_labels.index(cell.label), spec.name
        series.setdefault(name, []).append((xi, by_label[cell.label]))
    n = len(cols)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(380 * ncols, 300 * nrows + 40, layout="constrained")
        fig.suptitle(spec.title)
        for k, c in enumerate(cols):
            ax = fig.add_subplot(nrows, ncols, k + 1)
            scale, _ = _digits(c)
            for name, points in series.items():
                pts = [(xi, r.values.get(c, [])) for xi, r in points if r.values.get(c)]
                if not pts:
                    continue
                xv = [float(first.values[xi]) if numeric else float(xi) for xi, _ in pts]
                mean = [statistics.fmean(v) * scale for _, v in pts]
                std = [statistics.stdev(v) * scale if len(v) > 1 else 0.0 for _, v in pts]
                # categories are not a scale: points, no line between them
                ax.errorbar(xv, mean, yerr=std, marker="o", capsize=4, label=name, linestyle="-" if numeric else "none")
            if reference is not None and reference.values.get(c):
                ax.axhline(statistics.fmean(reference.values[c]) * scale, linestyle=":", color="grey",
                           label=REFERENCE_ROW)
            for k2, r in enumerate(alone):
                if r.values.get(c):
                    ax.axhline(statistics.fmean(r.values[c]) * scale, linestyle="--", color=f"C{len(series) + k2}",
                               label=r.label)
            if not ax.get_lines():
                ax.text(0.5, 0.5, "no data", ha="center", va="center", color="#5a5a5a", transform=ax.transAxes)
            if not numeric:
                ax.set_xticks(np.arange(len(xs_labels)))
                ax.set_xticklabels(xs_labels, rotation=20, ha="right", fontsize="small")
            ax.set_title(_header(c))
            ax.set_xlabel(xlabel)
            if ax.get_legend_handles_labels()[0] and (len(series) + len(alone) > 1 or reference is not None):
                ax.legend(fontsize="small")
    return fig


def write_outputs(plan: Plan, table: TableData, columns: Sequence[str]) -> list[Path]:
    """The table in every text format and the figure, into the sweep's folder (each file whole or
    not at all)."""
    from mtlbench.report.plotting import save_figure
    from mtlbench.report.tables import render, write_atomic

    written = []
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv"), ("json", "json")):
        path = plan.out / f"table.{suffix}"
        write_atomic(path, render([table], fmt), "table")
        written.append(path)
    if any(r.seeds for r in collect(plan, columns)[0]):
        path = plan.out / "figure.png"
        save_figure(sweep_figure(plan, columns), path)
        written.append(path)
    return written
