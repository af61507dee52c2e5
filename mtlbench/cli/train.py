"""``mtlbench run``: flags → a configuration → :mod:`mtlbench.workflows.train`."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mtlbench.cli.common import app, console, given, one_line_errors, one_line_warnings, typed_on_command_line
from mtlbench.errors import MtlbenchError
from mtlbench.rundir import RunDir

if TYPE_CHECKING:
    from rich.console import Console

    from mtlbench.config import RunConfig
    from mtlbench.engine.distributed import Dist

# each flag that sets a configuration key: parameter → key (`--set KEY=VALUE` reaches every key)
RUN_KEYS = {
    "model": "model.name", "task": "tasks", "data": "data.name", "data_root": "data.root", "size": "data.size",
    "backbone": "model.backbone", "pretrained": "model.pretrained", "weights": "model.weights",
    "interaction": "model.options.interaction", "weighting": "weighting.name",
    "frames": "data.options.frames", "protocol": "data.options.protocol", "classes": "data.options.classes",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "device": "train.device",
    "seed": "train.seed", "select": "train.select", "precision": "train.precision",
    "channels_last": "train.channels_last", "compile_": "train.compile", "sync_bn": "train.sync_bn",
}
# the run directory's checks name what to do; here, these flags do it
RUN_DIR_ACTIONS = {"resume": "--resume", "overwrite": "--overwrite"}


@app.command()
def run(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="registered model (default mtinet)")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="comma-separated tasks, any non-empty subset "
                                                                     "(default depth,seg,edge)")] = None,
    data: Annotated[str | None, typer.Option(help="dataset (default synthrooms, built in)")] = None,
    data_root: Annotated[str | None, typer.Option(help="dataset folder; synthrooms: its cache folder")] = None,
    backbone: Annotated[str | None, typer.Option(help="timm backbone (default resnet50)")] = None,
    preset: Annotated[str | None, typer.Option(help="beneath (the protocol of Beneath the Surface, default) or "
                                                    "quick (CPU demo)")] = None,
    config: Annotated[Path | None, typer.Option(help="a config.toml to start from (a run's own works)")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="training batch size")] = None,
    size: Annotated[int | None, typer.Option(help="square input side in pixels")] = None,
    frames: Annotated[int | None, typer.Option(help="synthrooms: frames to render")] = None,
    protocol: Annotated[str | None, typer.Option(help="nyuv2: random (80/10/10, as Beneath the Surface splits) or "
                                                         "official (NYUv2 795/654)")] = None,
    classes: Annotated[int | None, typer.Option(help="nyuv2: 40, 13 or 894 classes")] = None,
    split: Annotated[str | None, typer.Option(hidden=True, help="renamed --protocol")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    seed: Annotated[int | None, typer.Option(help="training seed (init, shuffling, augmentation)")] = None,
    select: Annotated[str | None, typer.Option(help="checkpoint criterion, e.g. val/depth/loss, val/seg/miou")] = None,
    interaction: Annotated[str | None,
                           typer.Option(help="mtinet: guidance module (mtlbench list interactions)")] = None,
    weighting: Annotated[str | None, typer.Option(help="loss weighting or gradient method (default fixed; "
                                                          "mtlbench list weightings)")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained",
                                             help="ImageNet weights from timm (hub or local cache)")] = False,
    weights: Annotated[str | None, typer.Option(help="backbone weights from a local file")] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16 on GPUs that support it, else fp32), fp32, bf16 "
                                                       "or fp16 (with a gradient scaler, GPU)")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="the same as --precision bf16")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels_last memory format (GPU)")] = False,
    compile_: Annotated[str | None, typer.Option("--compile", help="torch.compile the training step: a bare "
                                                                    "--compile is on; --compile=auto trains eager "
                                                                    "where it cannot compile")] = None,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="BatchNorm over the global batch when several "
                                                            "processes train")] = False,
    nproc: Annotated[int | None, typer.Option(help="train in N processes on this machine (torchrun, one GPU "
                                                     "each); --batch-size stays the global batch")] = None,
    run_dir: Annotated[Path | None,
                       typer.Option(help="where the run is written (default runs/MODEL-TASKS-TIME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --run-dir")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --run-dir")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE for any configuration key, e.g. "
                                                   "--set model.interaction.heads=2 (repeatable)")] = None,
) -> None:
    """Train a model on some tasks, validate every epoch, test the best checkpoint, print metrics."""
    one_line_warnings()
    settings, flags = given(ctx, RUN_KEYS)
    with one_line_errors(flags, RUN_DIR_ACTIONS):
        if split is not None:
            raise MtlbenchError(f"--split is now --protocol (the dataset's split protocol): pass --protocol {split}")
        if bf16:
            if precision not in (None, "bf16"):
                raise MtlbenchError(f"--bf16 and --precision {precision} contradict each other: choose one")
            settings["train.precision"] = "bf16"
        from mtlbench.workflows.train import check_run_dir, start  # lazy: imports torch

        if resume:
            if run_dir is None:
                raise MtlbenchError("--resume needs --run-dir naming the run to continue")
            changed = [f for f in typed_on_command_line(ctx) if f not in ("--resume", "--run-dir", "--device",
                                                                           "--nproc", "--overwrite")]
            if changed:
                raise MtlbenchError(f"a resumed run keeps its own config.toml: drop {', '.join(changed)}")
            check_run_dir(run_dir, resume, overwrite)
            from mtlbench import config as C  # lazy: tomllib and dataclasses, not needed for --help

            cfg = C.load(RunDir(run_dir).config)
            if device:
                cfg.train.device = device
        else:
            from mtlbench.workflows.configure import configure  # lazy: imports torch

            cfg = configure(preset, config, settings, set_)
            if run_dir is None:
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                run_dir = Path("runs") / f"{cfg.model.name}-{'-'.join(cfg.tasks)}-{stamp}"
        code = start(cfg, run_dir, resume=resume, replace=overwrite, nproc=nproc,
                     train=lambda where, dist: _train(cfg, where, resume, overwrite, dist))
    if code:
        raise typer.Exit(code)


def _per_process(cfg: RunConfig, world: int) -> str:
    return f" ({cfg.train.batch_size // world} in each of {world} processes)" if world > 1 else ""


def _speed(cfg: RunConfig, parts: Any) -> str:
    t = cfg.train
    return " ".join([parts.precision] + (["channels_last"] if t.channels_last else [])
                    + ([f"compiled ({t.compile_mode})"] if parts.compile else [])
                    + (["sync-bn"] if t.sync_bn and parts.dist.active else []))


def _header(cfg: RunConfig, run_dir: Path, parts: Any, err: Console) -> None:
    from mtlbench.config import resolved_select  # lazy: tomllib and dataclasses, not needed for --help

    n_params = sum(p.numel() for p in parts.model.parameters())
    s = parts.dataset_splits()
    err.print(f"[bold]mtlbench run[/] {cfg.model.name} on {', '.join(cfg.tasks)} | backbone "
              f"{cfg.model.backbone} ({n_params / 1e6:.1f} M parameters) | {cfg.data.size}x{cfg.data.size} | "
              f"device {parts.device} | preset {cfg.preset}", highlight=False)
    err.print(f"data: {s.source}; train/val/test {len(s.train)}/{len(s.val)}/{len(s.test)} | "
              f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}{_per_process(cfg, parts.dist.world)}, "
              f"Adam lr {cfg.train.lr:g} | {_speed(cfg, parts)} | "
              f"select {resolved_select(cfg)} | weighting {cfg.weighting.name} ({parts.weighting.level} level) | "
              f"run dir {run_dir}", highlight=False)
    for note in parts.notes:
        err.print(note, highlight=False, markup=False)  # notes may hold [brackets]


def _train(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool, dist: Dist) -> None:
    from mtlbench.report.console import RichReporter, metrics_table  # lazy: rich.progress, not needed for --help
    from mtlbench.workflows.train import train_run  # lazy: imports torch

    err = console(stderr=True)

    def progress(done: int, total: int) -> None:
        if done == total or done % 256 < 32:
            err.print(f"rendering synthrooms: {done}/{total} frames", highlight=False)

    main = dist.main
    with RichReporter(err) if main else nullcontext() as reporter:
        result = train_run(cfg, run_dir, resume=resume, replace=overwrite, dist=dist, progress=progress,
                           reporter=reporter, header=lambda parts: _header(cfg, run_dir, parts, err))
    if not main:
        return
    console().print(metrics_table(result["test"], f"test metrics ({cfg.model.name}, best epoch "
                                                  f"{result['best_epoch']} of {result['epochs']}, "
                                                  f"{result['sizes']['test']} frames)"))
    err.print(f"written: {RunDir(run_dir).metrics}", highlight=False)
