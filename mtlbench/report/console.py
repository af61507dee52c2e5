"""Rich output for the CLI: progress bars fed by the trainer, and result tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

# the metrics shown per task, in order, with a display name
SHOWN = {
    "depth": [("rmse", "RMSE m"), ("mae", "MAE m"), ("abs_rel", "AbsRel"), ("sq_rel", "SqRel"),
              ("rmse_log", "RMSE log"), ("log10", "log10"), ("silog", "SILog"), ("delta1", "δ<1.25"),
              ("delta2", "δ<1.25²"), ("delta3", "δ<1.25³"), ("rmse_img", "RMSE m (per image)"),
              ("abs_rel_img", "AbsRel (per image)"), ("delta1_img", "δ<1.25 (per image)"),
              ("mae_norm", "MAE (norm., the seed's)"), ("rmse_norm", "RMSE (norm., the seed's)"),
              ("dbe_acc", "DBE accuracy px"), ("dbe_comp", "DBE completeness px")],
    "seg": [("miou", "mIoU"), ("pixel_acc", "pixel acc."), ("mean_acc", "mean class acc."), ("fwiou", "fwIoU")],
    "edge": [("ods", "odsF"), ("ois", "oisF"), ("ap", "AP"), ("ods_threshold", "ODS threshold")],
}


class RichReporter:
    """Progress bars with ETA and live losses, drawn on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"), console=console, transient=False)
        self._task: Any = None

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, phase: str, epoch: int, epochs: int, steps: int) -> None:
        if self._task is not None:  # one bar at a time; finish() prints the epoch's summary
            self.progress.remove_task(self._task)
        desc = f"epoch {epoch}/{epochs} {phase}" if phase in ("train", "val") else phase
        self._task = self.progress.add_task(desc, total=steps, losses="")

    def advance(self, losses: dict[str, float] | None) -> None:
        fields = {}
        if losses is not None:
            fields["losses"] = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        self.progress.update(self._task, advance=1, **fields)

    def finish(self, record: dict[str, Any]) -> None:
        val = record["val"]
        parts = [f"{t} {val[t]['loss']:.4f}" for t in val if t != "total"]
        mark = " [green]best[/]" if record["best"] else ""
        train = " ".join(f"{k} {v:.4f}" for k, v in record["train"].items())
        self.progress.console.print(f"epoch {record['epoch']}: train loss {train} | val loss {' '.join(parts)} "
                                    f"| select {record['select']:.4f}{mark} ({record['time_s']:.0f} s)")

    def message(self, text: str) -> None:
        self.progress.console.print(text)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """One row per task metric of a ``metrics.json`` split (per-class IoU: ``mtlbench compare --per-class``);
    depth metrics are pooled over pixels unless marked per image."""
    table = Table(title=title)
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, values in metrics.items():
        if task == "total":
            continue
        shown = SHOWN.get(task, [(k, k) for k in values if k != "loss" and "/" not in k])
        rows = [(label, values[key]) for key, label in shown if key in values]
        for i, (label, value) in enumerate(rows):
            table.add_row(task if i == 0 else "", label, f"{value:.4f}")
        table.add_section()
    return table
