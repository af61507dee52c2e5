"""Rich output for the CLI: progress bars fed by the trainer, and result tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mtlbench.metrics.records import find, records_for


class RichReporter:
    """Progress bars with ETA and live losses, drawn on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"), console=console, transient=False)
        self._task: Any = None

    def __enter__(self) -> RichReporter:
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
        fields: dict[str, Any] = {}  # extra task fields: Progress.update takes them as **fields
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
    """One row per task metric of a ``metrics.json`` split, labelled and ordered by the metric
    records (per-class IoU: ``mtlbench compare --per-class``); depth metrics are pooled over
    pixels unless marked per image. A key without a record shows under its raw name, after the
    others, so that a forgotten record never hides a number."""
    table = Table(title=title)
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, values in metrics.items():
        if task == "total" or not isinstance(values, dict):
            continue
        values = {k: v for k, v in values.items() if k != "loss" and isinstance(v, (int, float))}
        rows = [(r.label, values[r.name]) for r in records_for(task) if r.order is not None and r.name in values]
        rows += [(k, v) for k, v in values.items() if find(task, k) is None and "/" not in k]
        for i, (label, value) in enumerate(rows):
            table.add_row(task if i == 0 else "", label, f"{value:.4f}")
        table.add_section()
    return table
