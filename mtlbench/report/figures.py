"""mtlbench's figures: the sample grid of *Beneath the Surface*, attention maps, training curves,
edge P/R curves.

Each returns a :class:`matplotlib.figure.Figure` (drawn with the generic helpers of
:mod:`mtlbench.report.plotting`); :func:`save_figure` writes one as PNG, PDF or SVG by suffix.
Images come in already coloured (each task's ``colorize``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlbench.errors import MtlbenchError
from mtlbench.metrics.records import records_for
from mtlbench.report.plotting import (
    draw_lines,
    drawing,
    new_figure,
    panel_grid,
    points,
    save_figure,
    save_png,
    to_uint8_rgb,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["attention_figure", "pr_curve", "sample_figure", "save_figure", "save_png",
           "training_curves"]

CROSS = (0, 255, 0)
HEAT = "plasma"  # attention colour map: dark blue (ignored) → red → yellow (most attended)
_KNOWN_ORDER = ("depth", "seg", "edge")


# ----------------------------------------------------------------------------- samples


def sample_figure(rgb: Any, pred_edge: Any, gt_seg: Any, gt_depth: Any, pred_seg: Any,
                pred_depth: Any, title: str | None = None, normals: tuple[Any, Any, Any] | None = None) -> Figure:
    """The paper's qualitative figure: 2 rows × 3 columns.

    Row 1: RGB, GT segmentation, predicted segmentation; row 2: predicted edges, GT depth,
    predicted depth (so each column pairs RGB/edges, GT seg/depth, predicted seg/depth). With
    ``normals`` = (GT edges, GT normals, predicted normals), a third row shows them.

    Args:
        rgb: the input image, H×W×3 uint8 (or anything :func:`to_uint8_rgb` takes).
        pred_edge: coloured edge prediction, or None if edges were not trained.
        gt_seg: coloured segmentation ground truth, or None when there is none.
        gt_depth: coloured depth ground truth, or None when there is none.
        pred_seg: coloured segmentation prediction, or None if segmentation was not trained.
        pred_depth: coloured depth prediction, or None if depth was not trained.
        title: optional title above the grid.
    """
    def gt(x: Any) -> Any:
        return "no ground truth" if x is None else x

    def pred(x: Any) -> Any:
        return "not trained" if x is None else x

    panels = [("RGB", "no image" if rgb is None else rgb),
              ("GT seg", gt(gt_seg)),
              ("predicted seg", pred(pred_seg)),
              ("predicted edges", pred(pred_edge)),
              ("GT depth", gt(gt_depth)),
              ("predicted depth", pred(pred_depth))]
    if normals is not None:
        gt_edge, gt_normals, pred_normals = normals
        panels += [("GT edges", gt(gt_edge)), ("GT normals", gt(gt_normals)), ("predicted normals", pred(pred_normals))]
    return panel_grid(panels, cols=3, title=title)


@drawing
def task_figure(rgb: Any, tasks: Sequence[tuple[str, Any, Any]], title: str | None = None) -> Figure:
    """RGB, then each task's ground truth and prediction (coloured images, ``None`` where absent),
    one row per task, the RGB on the first.

    Args:
        rgb: the input image, H×W×3 uint8.
        tasks: (task name, coloured ground truth, coloured prediction) triples.
        title: optional title above the grid.
    """
    panels: list[tuple[str, Any]] = []
    for k, (name, gt, pred) in enumerate(tasks):
        panels += [("RGB" if k == 0 else "", ("no image" if rgb is None else rgb) if k == 0 else ""),
                   (f"GT {name}", "no ground truth" if gt is None else gt),
                   (f"predicted {name}", "not trained" if pred is None else pred)]
    return panel_grid(panels, cols=3, title=title)


@drawing
def attention_figure(rgb: Any, maps: Sequence[tuple[str, np.ndarray]],
                     query: tuple[int, int] | None = None, title: str | None = None,
                     alpha: float = 0.6) -> Figure:
    """One row: the RGB image, then each attention map as heat over it.

    Each map (one query's weights over the key grid, any small h×w) is scaled to [0, 1] by its
    own min and max, stretched bilinearly over the RGB and drawn in the :data:`HEAT` colours
    (yellow = most attended) at opacity ``alpha``.

    Args:
        rgb: the input image, H×W×3 uint8 (or anything :func:`to_uint8_rgb` takes).
        maps: (caption, h×w attention weights) pairs.
        query: the query pixel as (row, col) in RGB pixel coordinates, marked with a green cross
            on every panel; None draws no cross.
        title: optional title above the row.
        alpha: opacity of the heat over the RGB.
    """
    base = to_uint8_rgb(rgb)
    h, w = base.shape[:2]
    heats = []
    for _, m in maps:
        m = np.nan_to_num(np.asarray(m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if m.ndim != 2:
            raise ValueError(f"an attention map must be h×w, got shape {m.shape}")
        lo, hi = float(m.min()), float(m.max())
        heats.append((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m))
    fig = panel_grid([("RGB", base)] + [(cap, base) for cap, _ in maps], cols=1 + len(maps),
                     title=title)
    from matplotlib.patheffects import withStroke

    for i, ax in enumerate(fig.axes):
        if i:
            # the map's cells spread over the whole image; interpolated before colouring
            ax.imshow(heats[i - 1], cmap=HEAT, vmin=0.0, vmax=1.0, alpha=alpha,
                      interpolation="bilinear", interpolation_stage="data", aspect="auto",
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        if query is not None:
            (y, x), arm = query, 5
            # two lines rather than a "+" marker: Agg rounds marker positions to whole pixels,
            # half a pixel off the pixel centres the image coordinates name
            ax.plot([x - arm, x + arm, np.nan, x, x], [y, y, np.nan, y - arm, y + arm],
                    color=np.array(CROSS) / 255, linewidth=points(1), antialiased=False,
                    snap=False, solid_capstyle="butt",
                    path_effects=[withStroke(linewidth=points(3), foreground="black")])
    return fig


# ----------------------------------------------------------------------------- training curves


def _number(v: Any) -> float:
    """``v`` as a float, NaN when it is missing or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _val_entry(record: Mapping, task: str) -> Mapping:
    """A record's validation results for ``task`` as a dict (a bare number is its loss)."""
    v = (record.get("val") or {}).get(task)
    if isinstance(v, Mapping):
        return v
    return {} if v is None else {"loss": v}


def _tasks(records: Sequence[Mapping]) -> list[str]:
    """Task names in the log, the known ones first in their usual order, "total" left out."""
    seen: list[str] = []
    for rec in records:
        for part in ("train", "val"):
            for name in rec.get(part) or {}:
                if name != "total" and name not in seen:
                    seen.append(name)
    return [t for t in _KNOWN_ORDER if t in seen] + [t for t in seen if t not in _KNOWN_ORDER]


def _key_metric(records: Sequence[Mapping], task: str) -> str | None:
    """The task's key validation metric if logged, else its first non-loss metric, else None."""
    names: list[str] = []
    for rec in records:
        for name in _val_entry(rec, task):
            if name != "loss" and name not in names:
                names.append(name)
    preferred = next((r.name for r in records_for(task) if r.key), None)
    if preferred in names:
        return preferred
    return names[0] if names else None


@drawing
def training_curves(records: Sequence[Mapping], title: str | None = None,
                    size: tuple[int, int] = (480, 320)) -> Figure:
    """A run's curves from its ``log.jsonl`` records: one row of two plots per task.

    Left: train and validation loss per epoch; right: the task's key validation metric (depth
    rmse, seg miou, edge ods, otherwise the first non-loss metric logged; an empty plot saying
    "no data" when there is none). The best epoch (the last record with ``"best": true``) is
    marked on both. Tasks are those in the records' ``train``/``val`` (``total`` left out).
    ``fig.axes`` are the plots row by row.

    Args:
        records: the log's records, each with ``epoch``, ``train`` {task: loss}, ``val``
            {task: {metric: value}}, optionally ``best``.
        title: optional title above the plots.
        size: each plot's (width, height) in pixels.
    """
    if not records:
        raise MtlbenchError("no epochs logged yet: nothing to plot")
    tasks = _tasks(records)
    if not tasks:
        raise MtlbenchError("the log has no per-task losses or metrics to plot")
    epochs = [_number(rec.get("epoch", i + 1)) for i, rec in enumerate(records)]
    best_i = max((i for i, rec in enumerate(records) if rec.get("best") is True), default=None)

    def mark(ys: list[float]) -> dict[str, tuple[float, float]]:
        if best_i is None or not math.isfinite(ys[best_i]):
            return {}
        return {f"best (epoch {epochs[best_i]:g})": (epochs[best_i], ys[best_i])}

    fig = new_figure(2 * size[0], len(tasks) * size[1], layout="constrained")
    axes = fig.subplots(len(tasks), 2, squeeze=False)
    for task, (loss_ax, metric_ax) in zip(tasks, axes):
        train = [_number((rec.get("train") or {}).get(task)) for rec in records]
        val = [_number(_val_entry(rec, task).get("loss")) for rec in records]
        draw_lines(loss_ax, {"train": (epochs, train), "val": (epochs, val)}, f"{task} loss",
                   "epoch", "loss", mark(val) or mark(train))
        metric = _key_metric(records, task)
        if metric is None:
            draw_lines(metric_ax, {}, f"{task} metric (val)", "epoch", "metric")
            continue
        ys = [_number(_val_entry(rec, task).get(metric)) for rec in records]
        draw_lines(metric_ax, {f"val {metric}": (epochs, ys)}, f"{task} {metric} (val)", "epoch",
                   metric, mark(ys))
    if title:
        fig.suptitle(title)
    return fig


@drawing
def weight_curves(records: Sequence[Mapping], method: str, size: tuple[int, int] = (640, 360)) -> Figure:
    """The mean weight the weighting ``method`` gave each task per epoch (the records' ``weights``),
    one line per task; epochs without weights (a method that logs none) are gaps."""
    logged = [rec for rec in records if isinstance(rec.get("weights"), Mapping)]
    if not logged:
        raise MtlbenchError(f"weighting {method} logged no task weights: nothing to plot")
    tasks = list(dict.fromkeys(t for rec in logged for t in rec["weights"]))
    epochs = [_number(rec.get("epoch", i + 1)) for i, rec in enumerate(records)]
    fig = new_figure(*size, layout="constrained")
    ax = fig.subplots()
    lines = {t: (epochs, [_number((rec.get("weights") or {}).get(t)) for rec in records]) for t in tasks}
    draw_lines(ax, lines, f"task weights of {method} (mean per epoch)", "epoch", "weight")
    return fig


# ----------------------------------------------------------------------------- edges


@drawing
def pr_curve(curves: Mapping[str, Any], title: str = "edge precision / recall",
             size: tuple[int, int] = (400, 400)) -> Figure:
    """Edge precision against recall, the way BSDS papers show them, with iso-F contours.

    Takes :meth:`mtlbench.metrics.EdgeMetrics.curve`'s dict (``threshold``, ``precision``,
    ``recall``, ``fscore`` lists), or name → such a dict to compare runs. Each curve is one line
    over its thresholds, leaving out those where nothing was predicted (precision and recall
    both 0) and non-finite points, with a dot on its best-F threshold; the legend gives that F.
    The grey iso-F contours (F = 0.1 … 0.9) have gid ``"iso-f"``.

    Args:
        curves: one curve, or name → curve.
        title: the plot title.
        size: (width, height) in pixels.
    """
    if "precision" in curves:
        curves = {"": curves}
    fig = new_figure(*size, layout="constrained")
    ax = fig.add_subplot()
    for f in np.arange(1, 10) / 10:
        r = np.linspace(f / 2 + 1e-3, 1.0, 100)
        ax.plot(r, f * r / (2 * r - f), color="#d0d0d0", linewidth=0.8, gid="iso-f", zorder=1)
    drawn = 0
    for i, (name, curve) in enumerate(curves.items()):
        p = np.asarray(curve["precision"], dtype=np.float64)
        r = np.asarray(curve["recall"], dtype=np.float64)
        f = np.asarray(curve["fscore"], dtype=np.float64)
        keep = np.isfinite(p) & np.isfinite(r) & ((p > 0) | (r > 0))
        if not keep.any():
            continue
        colour = f"C{i % 10}"
        best = int(np.argmax(np.where(keep & np.isfinite(f), f, -np.inf)))
        label = f"{name}: max F {f[best]:.3f}" if name else f"max F {f[best]:.3f}"
        ax.plot(r[keep], p[keep], color=colour, label=label, zorder=2)
        ax.plot([r[best]], [p[best]], marker="o", color=colour, linestyle="none", zorder=3)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color="#5a5a5a",
                transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="recall", ylabel="precision", title=title)
    ax.set_aspect("equal")
    ax.grid(False)  # the iso-F contours are the guide lines
    if drawn:
        ax.legend(loc="lower left", fontsize="small")
    return fig
