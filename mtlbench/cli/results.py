"""The commands that read what runs wrote or measure a model: ``eval``, ``compare``, ``predict``
and ``cost``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlbench.cli.common import app, console, flag_name, given, one_line_errors, one_line_warnings
from mtlbench.errors import MtlbenchError
from mtlbench.rundir import RunDir

COST_KEYS = {"model": "model.name", "task": "tasks", "backbone": "model.backbone", "size": "data.size",
             "interaction": "model.options.interaction", "device": "train.device"}


@app.command()
def cost(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="registered model (default mtinet)")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="comma-separated tasks (default "
                                                                     "depth,seg,edge)")] = None,
    backbone: Annotated[str | None, typer.Option(help="timm backbone (default resnet50)")] = None,
    size: Annotated[int | None, typer.Option(help="square input side in pixels (default 256)")] = None,
    interaction: Annotated[str | None, typer.Option(help="the model's interaction (mtinet)")] = None,
    config: Annotated[Path | None, typer.Option(help="a config.toml whose model to measure (a run's own works)")
                      ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE for any configuration key, e.g. "
                                                   "--set model.options.light=true")] = None,
    batch_size: Annotated[int, typer.Option(help="images per forward pass (costs are per image)")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "cpu",
    repeats: Annotated[int, typer.Option(help="timed forward passes (median), after 2 warm-up passes")] = 5,
    markdown: Annotated[Path | None, typer.Option(help="also write the tables as Markdown to this file")] = None,
) -> None:
    """Parameters, FLOPs, activation memory and latency per image; a multi-task model against the
    sum of its single-task models."""
    from mtlbench.cost import config_cost  # lazy: imports torch
    from mtlbench.report.cost import cost_tables  # lazy: imports mtlbench.cost (torch)
    from mtlbench.report.tables import check_writable, to_markdown, to_rich, write_atomic  # lazy: not for --help

    one_line_warnings()
    stdout = console()
    err = console(stderr=True)
    settings, flags = given(ctx, COST_KEYS)
    settings["train.device"] = device  # measured where asked, the CPU by default, whatever the config says
    with one_line_errors(flags):
        if markdown is not None:
            check_writable(markdown, "--markdown")
        from mtlbench.workflows.configure import configure  # lazy: imports torch

        cfg = configure(None, config, settings, set_)
        report = config_cost(cfg, batch_size, repeats, progress=lambda line: err.print(line, highlight=False))
        tables = cost_tables(report)
        for table in tables:
            stdout.print(to_rich(table))
        if len(report.tasks) == 1:
            err.print("one task: no multi-task comparison (pass several tasks to compare against single-task "
                      "models)", highlight=False)
        if markdown is not None:
            write_atomic(markdown, to_markdown(tables), "--markdown")
            err.print(f"written: {markdown}", highlight=False)


def _eval_overrides(min_depth: float | None, max_depth: float | None, eigen_crop: bool | None,
                    boundaries: bool | None, edge_tolerance: float | None, edge_thresholds: int | None,
                    edge_nms: bool | None, edge_matching: str | None = None,
                    resolution: str | None = None) -> dict[str, Any]:
    given = {"min_depth": min_depth, "max_depth": max_depth, "eigen_crop": eigen_crop, "boundaries": boundaries,
             "edge_tolerance": edge_tolerance, "edge_thresholds": edge_thresholds, "edge_nms": edge_nms,
             "edge_matching": edge_matching, "resolution": resolution}
    return {k: v for k, v in given.items() if v is not None}


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (from `mtlbench run`)")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    checkpoint: Annotated[str, typer.Option(help="best (by validation) or last")] = "best",
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default: the run's)")] = None,
    eigen_crop: Annotated[bool | None, typer.Option("--eigen-crop/--no-eigen-crop",
                                                       help="depth inside Eigen's crop only")] = None,
    min_depth: Annotated[float | None, typer.Option(help="metres; ground truth at or below is invalid")] = None,
    max_depth: Annotated[float | None, typer.Option(help="metres; evaluation cap (0: the dataset's maximum)")] = None,
    boundaries: Annotated[bool | None, typer.Option("--boundaries/--no-boundaries",
                                                       help="iBims-1 depth-boundary errors")] = None,
    edge_tolerance: Annotated[float | None, typer.Option(help="edge matching distance, fraction of the "
                                                                 "diagonal (0.011: NYUD)")] = None,
    edge_thresholds: Annotated[int | None, typer.Option(help="edge thresholds K: 1/(K+1) .. K/(K+1) "
                                                                "(99: 0.01 .. 0.99)")] = None,
    edge_nms: Annotated[bool | None, typer.Option("--edge-nms/--no-edge-nms",
                                                     help="thin edge maps before matching")] = None,
    edge_matching: Annotated[str | None, typer.Option(help="exact (one-to-one, as BSDS; auto here) or fast "
                                                           "(many-to-one)")] = None,
    resolution: Annotated[str | None, typer.Option(help="auto (the ground truth's own resolution where the "
                                                        "protocol has one) or input")] = None,
    figures: Annotated[int, typer.Option(help="also draw this many samples (the 2×3 grid of Beneath the "
                                              "Surface) and the training curves into RUN_DIR/figures")] = 0,
) -> None:
    """Re-evaluate a run's checkpoint on a split with every metric; writes it into RUN_DIR/metrics.json."""

    one_line_warnings()
    stdout = console()
    err = console(stderr=True)
    options = _eval_overrides(min_depth, max_depth, eigen_crop, boundaries, edge_tolerance, edge_thresholds,
                              edge_nms, edge_matching, resolution)
    with one_line_errors({f"eval.{k}": flag_name(k) for k in options}):
        from mtlbench.report.console import metrics_table  # lazy: rich.progress, not needed for --help
        from mtlbench.workflows.evaluate import evaluate_with_figures  # lazy: imports torch

        with err.status(f"evaluating {run_dir} ({split}, {checkpoint} checkpoint)"):
            metrics = evaluate_with_figures(run_dir, split, checkpoint, device, options, figures)
    info = metrics["eval"][split]
    stdout.print(metrics_table(metrics[split], f"{split} metrics ({metrics['model']}, {checkpoint} checkpoint, "
                                                f"epoch {info['epoch']}, {metrics['sizes'][split]} frames)"))
    err.print(f"written: {RunDir(run_dir).metrics}" + (f" and {RunDir(run_dir).figures}" if figures else ""),
              highlight=False)


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories with a metrics.json")],
    split: Annotated[str, typer.Option(help="which split of each metrics.json")] = "test",
    fmt: Annotated[str, typer.Option("--format", "-f", help="rich, md, latex, csv or json")] = "rich",
    out: Annotated[Path | None, typer.Option(help="write the tables to this file instead of printing")] = None,
    baseline: Annotated[list[Path] | None,
                        typer.Option(help="a one-task run serving as Δm reference "
                                          "(repeatable; one-task runs compared serve too)")] = None,
    delta: Annotated[str, typer.Option(help="Δm variant: mti (one metric per task), all (every metric), "
                                            "both or none")] = "mti",
    published: Annotated[bool, typer.Option("--published/--no-published",
                                            help="add published numbers of the same protocol")] = True,
    other_protocols: Annotated[bool, typer.Option("--other-protocols",
                                                  help="also list published numbers of "
                                                       "other protocols, in their own tables")] = False,
    columns: Annotated[str | None, typer.Option(help="comma-separated metric keys, e.g. depth/rmse,seg/miou")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="also tabulate per-class IoU")] = False,
) -> None:
    """Tabulate runs side by side and beside published baselines of the same protocol, with Δm."""
    # lazy: torch-free, but not needed for --help
    from mtlbench.report.results import comparison_tables, load_run, per_class_table
    from mtlbench.report.tables import FORMATS, check_writable, render, to_rich_fitted, write_atomic

    with one_line_errors():
        if fmt not in FORMATS:
            raise MtlbenchError(f"unknown --format {fmt!r}: choose from {', '.join(FORMATS)}")
        if fmt == "rich" and out is not None:
            raise MtlbenchError("--out needs a file format: add --format md, latex, csv or json")
        variants = {"mti": ("mti",), "all": ("all",), "both": ("mti", "all"), "none": ()}
        if delta not in variants:
            raise MtlbenchError(f"unknown --delta {delta!r}: choose mti, all, both or none")
        if out is not None:
            check_writable(out, "--out")
        runs = [load_run(p) for p in run_dirs]
        refs = [load_run(p) for p in baseline or []]
        keys = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        tables = comparison_tables(runs, split, published, other_protocols, variants[delta], refs, keys)
        if per_class:
            tables.append(per_class_table(runs, split))
        if fmt == "rich":
            stdout = console()
            for table in tables:
                for part in to_rich_fitted(table, stdout.width):
                    stdout.print(part)
        elif out is not None:
            write_atomic(out, render(tables, fmt), "--out")
            console(stderr=True).print(f"written: {out}", highlight=False)
        else:
            typer.echo(render(tables, fmt), nl=False)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (from `mtlbench run`)")],
    images: Annotated[list[Path], typer.Argument(help="RGB images (PNG or JPEG), any size")],
    out: Annotated[Path, typer.Option(help="folder for predictions and figures")] = Path("predictions"),
    depth: Annotated[list[Path] | None, typer.Option(help="ground-truth depth PNG per image, in order "
                                                             "(repeatable)")] = None,
    labels: Annotated[list[Path] | None, typer.Option(help="ground-truth label PNG per image (class ids, "
                                                              "255 unlabelled), in order (repeatable)")] = None,
    depth_scale: Annotated[float, typer.Option(help="depth PNG value per metre (NYUv2 exports: 5000)")] = 5000.0,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default: the run's)")] = None,
) -> None:
    """Predict every task of a run on image files; writes depth (.npy, metres), labels and edges
    (.png) and the 2×3 figure of Beneath the Surface per image, plus attention maps for guided
    attention."""

    one_line_warnings()
    err = console(stderr=True)
    with one_line_errors():
        from mtlbench.workflows.predict import predict_images  # lazy: imports torch

        written = predict_images(run_dir, images, out, depth or (), labels or (), depth_scale, checkpoint, device)
    for path in written:
        err.print(f"written: {path}", highlight=False)
