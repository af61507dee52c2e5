"""``mtlbench list``, ``data prepare`` and ``plugin new``: what is registered, a dataset's
one-off preparation, a plugin distribution from a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mtlbench.cli.common import app, console, data_app, fail, one_line_errors, one_line_warnings, plugin_app
from mtlbench.errors import MtlbenchError
from mtlbench.registry import REGISTRIES, registry


@app.command("list")
def list_cmd(
    kind: Annotated[str | None, typer.Argument(help="tasks, backbones, interactions, losses, weightings, "
                                                      "datasets or models; all when omitted")] = None,
) -> None:
    """List what is registered, and where each entry comes from (built-in or which plugin)."""
    one_line_warnings()
    try:
        kinds = [registry(kind).kind] if kind else list(REGISTRIES)
        stdout = console()
        for k in kinds:
            table = Table(title=k)
            for col in ("name", "source", "description"):
                table.add_column(col)
            for e in registry(k).entries():
                extra = f" (tasks: {', '.join(e.meta['tasks'])})" if "tasks" in e.meta else ""
                if e.meta.get("level"):
                    extra += f" ({e.meta['level']} level)"
                if e.meta.get("paper"):
                    extra += f" paper: {e.meta['paper']}."
                if e.meta.get("implementation"):
                    extra += f" implementation: {e.meta['implementation']}."
                if e.meta.get("extra"):
                    extra += f" needs pip install '{e.meta['extra']}'."
                if e.options:
                    extra += f" options: {', '.join(f'{n}={o.default!r}' for n, o in e.options.items())}"
                table.add_row(e.name, e.source, escape(e.summary + extra))  # "[solvers]" is not markup
            stdout.print(table)
    except MtlbenchError as exc:
        fail(str(exc))


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="a dataset with a prepare step (nyuv2)")],
    out: Annotated[Path, typer.Option(help="folder for the cache; runs read it as data.root (--data-root)")],
    source: Annotated[Path | None, typer.Option(help="the originals to read (nyuv2: nyu_depth_v2_labeled.mat)")
                      ] = None,
    mat: Annotated[Path | None, typer.Option(help="nyuv2: the same as --source")] = None,
    size: Annotated[int | None, typer.Option(help="nyuv2: square side in pixels; 0 keeps 480x640 (default 256)")
                    ] = None,
    classes: Annotated[int | None, typer.Option(help="nyuv2: 40, 13 or 894 (default 40)")] = None,
    raw_depth: Annotated[bool, typer.Option("--raw-depth",
                                            help="nyuv2: rawDepths with holes (0) instead of in-painted depths")
                         ] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE for any option of the dataset's "
                                                                 "prepare step (repeatable)")] = None,
) -> None:
    """Run a dataset's prepare step: read its originals once and write the cache runs read."""
    from rich.progress import (  # lazy: only this command draws its own bar; not needed for --help
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mtlbench.settings import parse_sets

    err = console(stderr=True)
    with one_line_errors({k: f"--{k}" for k, v in (("size", size), ("classes", classes)) if v is not None}):
        if source is not None and mat is not None:
            raise MtlbenchError("--source and --mat name the same file: pass one")
        if (source or mat) is None:
            raise MtlbenchError("--source names the originals to read (nyuv2: --source nyu_depth_v2_labeled.mat)")
        options = {k: v for k, v in {"size": size, "classes": classes, "raw_depth": raw_depth or None}.items()
                   if v is not None}
        options.update(parse_sets(set_ or []))
        from mtlbench.data.datasets import prepare_dataset  # lazy: imports torch

        columns = (TextColumn(f"[bold]preparing {escape(dataset)}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        bar = Progress(*columns, console=err)
        task = bar.add_task("frames", total=None)

        def progress(done: int, total: int) -> None:
            bar.start()  # on the first frame: checks that fail earlier print nothing but their line
            bar.update(task, completed=done, total=total)

        try:
            result = prepare_dataset(dataset, source or mat, out, progress, **options)  # type: ignore[arg-type]
        finally:
            bar.stop()
    state = "written" if result.written else "already complete, nothing to do"
    err.print(f"{result.folder}: {state}", highlight=False)


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="the plugin's registered name (lower case, digits, _)")],
    kind: Annotated[str, typer.Option(help="interaction, loss, weighting, model, dataset or task")] = "interaction",
    out: Annotated[Path | None, typer.Option(help="the folder to write (default ./NAME); new or empty")] = None,
) -> None:
    """Write a plugin distribution that installs with `pip install -e` and trains at once, with
    tests that use the contract kit (mtlbench.testing)."""
    from mtlbench.scaffold import new_plugin, registry_kind  # lazy: not needed for --help

    err = console(stderr=True)
    with one_line_errors():
        folder = out if out is not None else Path(name)
        written = new_plugin(name, kind, folder)
    for path in written:
        err.print(f"written: {path}", highlight=False, markup=False)
    err.print(f"next: pip install -e {folder} && mtlbench list {registry_kind(kind)}", highlight=False, markup=False)


