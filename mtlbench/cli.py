"""The ``mtlbench`` command line. Each command parses, builds a config and calls the library.

Heavy modules (torch, timm, kornia, plugins) are imported inside commands, never at start-up,
so ``mtlbench --help`` stays fast; so are the light ones that ``--help`` does not load anyway.
At module level only what ``import mtlbench`` (errors, registry) and typer's help (rich) load.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mtlbench.errors import MtlbenchError, NonFiniteLossError
from mtlbench.registry import REGISTRIES, registry
from mtlbench.rundir import RunDir

if TYPE_CHECKING:
    from mtlbench.config import RunConfig

app = typer.Typer(help="Train and compare multi-task dense-prediction models (depth, segmentation, edges).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

data_app = typer.Typer(help="Prepare datasets: read the originals once, write a fast cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

plugin_app = typer.Typer(help="Write plugins: a new distribution from a template.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _debug() -> bool:
    return os.environ.get("MTLBENCH_DEBUG", "") not in ("", "0")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Bad input becomes one line on stderr and exit code 2 (``MTLBENCH_DEBUG=1``: the traceback);
    a loss that stopped being finite exits 1."""
    try:
        yield
    except NonFiniteLossError as exc:
        _fail(str(exc), EXIT_FAILED)
    except MtlbenchError as exc:
        if _debug():
            raise
        _fail(str(exc))


def _one_line_warnings() -> None:
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"


@app.command("list")
def list_cmd(
    kind: Annotated[str | None, typer.Argument(help="tasks, backbones, interactions, losses, weightings, "
                                                      "datasets or models; all when omitted")] = None,
) -> None:
    """List what is registered, and where each entry comes from (built-in or which plugin)."""
    _one_line_warnings()
    try:
        kinds = [registry(kind).kind] if kind else list(REGISTRIES)
        console = _console()
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
            console.print(table)
    except MtlbenchError as exc:
        _fail(str(exc))


def _make_config(preset: str | None, config: Path | None, settings: dict[str, object],
                 flags: dict[str, dict[str, str]], sets: list[str] | None = None) -> RunConfig:
    """Preset (or a config file), then the dotted settings the flags and ``--set KEY=VALUE`` give
    (:mod:`mtlbench.settings`); ``flags``: per options table, option → the flag that set it, for
    errors. Checked and resolved whole."""
    from mtlbench import config as C  # lazy: tomllib and dataclasses, not needed for --help
    from mtlbench import settings as S
    from mtlbench.engine.build import resolve  # lazy: imports torch
    from mtlbench.tasks import parse_tasks  # lazy: imports torch

    if config is not None and preset is not None:
        raise MtlbenchError("--preset and --config both give a whole configuration: choose one")
    named: set[str] = set()
    if config is not None:
        base = C.load(config, named)
    else:
        base = C.preset(preset or "seed")
        named = C.named_keys(C.PRESETS[base.preset])
    given = {**settings, **S.parse_sets(sets or [])}
    if isinstance(given.get("tasks"), str):
        given["tasks"] = list(parse_tasks(str(given["tasks"])))
    cfg = S.apply(base, given, "setting", named=named,
                  say=lambda line: warnings.warn(line, C.ConfigWarning, stacklevel=2))
    resolve(cfg, flags)
    return cfg


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise MtlbenchError("--resume and --overwrite contradict each other: choose one")
    if resume:
        if not RunDir(run_dir).is_run():
            raise MtlbenchError(f"nothing to resume in {run_dir}: no config.toml there; drop --resume to start a run")
        return
    if run_dir.exists():
        if not run_dir.is_dir():
            raise MtlbenchError(f"run directory {run_dir} is a file: choose another --run-dir")
        if not overwrite:
            raise MtlbenchError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                                f"--overwrite to replace it, or another --run-dir")
        if run_dir.is_dir() and any(run_dir.iterdir()) and not RunDir(run_dir).is_run():
            raise MtlbenchError(f"refusing to overwrite {run_dir}: it is not an mtlbench run directory")


@app.command()
def run(
    model: Annotated[str | None, typer.Option("--model", "-m", help="registered model (default mtinet)")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="comma-separated tasks, any non-empty subset "
                                                                     "(default depth,seg,edge)")] = None,
    data: Annotated[str | None, typer.Option(help="dataset (default synthrooms, built in)")] = None,
    data_root: Annotated[str | None, typer.Option(help="dataset folder; synthrooms: its cache folder")] = None,
    backbone: Annotated[str | None, typer.Option(help="timm backbone (default resnet50)")] = None,
    preset: Annotated[str | None, typer.Option(help="seed (the paper's protocol, default) or quick (CPU demo)")] = None,
    config: Annotated[Path | None, typer.Option(help="a config.toml to start from (a run's own works)")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="training batch size")] = None,
    size: Annotated[int | None, typer.Option(help="square input side in pixels")] = None,
    frames: Annotated[int | None, typer.Option(help="synthrooms: frames to render")] = None,
    protocol: Annotated[str | None, typer.Option(help="nyuv2: seed (random 80/10/10, the paper's) or official "
                                                         "(NYUv2 795/654)")] = None,
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
    _one_line_warnings()
    console = _console()
    err = _console(stderr=True)
    flag_settings = {
        "data.name": data, "data.root": data_root, "data.size": size,
        "model.name": model, "model.backbone": backbone, "model.pretrained": pretrained or None,
        "model.weights": weights,
        "weighting.name": weighting, "tasks": task,
        "train.epochs": epochs, "train.batch_size": batch_size, "train.lr": lr, "train.device": device,
        "train.seed": seed, "train.select": select, "train.precision": precision,
        "train.channels_last": channels_last or None, "train.compile": compile_, "train.sync_bn": sync_bn or None,
    }
    # flags that set a factory's option, named in errors: key → flag
    option_flags = {"data.options.frames": ("--frames", frames), "data.options.protocol": ("--protocol", protocol),
                    "data.options.classes": ("--classes", classes),
                    "model.options.interaction": ("--interaction", interaction)}
    settings: dict[str, object] = {k: v for k, v in flag_settings.items() if v is not None}
    flags: dict[str, dict[str, str]] = {}
    for key, (flag, value) in option_flags.items():
        if value is not None:
            settings[key] = value
            section, _, name = key.partition(".options.")
            flags.setdefault(section, {})[name] = flag
    with _one_line_errors():
        if split is not None:
            raise MtlbenchError(f"--split is now --protocol (the dataset's split protocol): pass --protocol {split}")
        if bf16:
            if precision not in (None, "bf16"):
                raise MtlbenchError(f"--bf16 and --precision {precision} contradict each other: choose one")
            settings["train.precision"] = precision = "bf16"
        if resume:
            if run_dir is None:
                raise MtlbenchError("--resume needs --run-dir naming the run to continue")
            given = {"--model": model, "--task": task, "--data": data, "--data-root": data_root,
                     "--backbone": backbone, "--preset": preset, "--config": config, "--epochs": epochs,
                     "--batch-size": batch_size, "--size": size, "--frames": frames, "--protocol": protocol,
                     "--classes": classes, "--lr": lr, "--seed": seed, "--select": select,
                     "--interaction": interaction, "--weighting": weighting, "--weights": weights,
                     "--pretrained": pretrained or None, "--precision": precision,
                     "--bf16": bf16 or None, "--channels-last": channels_last or None, "--compile": compile_,
                     "--sync-bn": sync_bn or None, "--set": set_ or None}
            changed = [flag for flag, v in given.items() if v is not None]
            if changed:
                raise MtlbenchError(f"a resumed run keeps its own config.toml: drop {', '.join(sorted(changed))}")
            _prepare_run_dir(run_dir, resume, overwrite)
            from mtlbench import config as C  # lazy: tomllib and dataclasses, not needed for --help

            cfg = C.load(RunDir(run_dir).config)
            if device:
                cfg.train.device = device
        else:
            cfg = _make_config(preset, config, settings, flags, set_)
            if run_dir is None:
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                run_dir = Path("runs") / f"{cfg.model.name}-{'-'.join(cfg.tasks)}-{stamp}"
        from mtlbench.engine.distributed import environment, init, shutdown  # lazy: imports torch

        if resume:
            _check_resume_world(run_dir, nproc or environment().world)
        if nproc is not None:
            _prepare_run_dir(run_dir, resume, overwrite)
            _launch(cfg, run_dir, resume, overwrite, nproc)
            return

        dist = init(cfg.train.device)  # alone unless torchrun started this process
        try:
            run_dir = dist.share(run_dir)  # rank 0's, whose clock named it
            problem = None
            if dist.main and not resume:  # the others would see the folder rank 0 creates
                try:
                    _prepare_run_dir(run_dir, resume, overwrite)
                except MtlbenchError as exc:
                    problem = str(exc)
            problem = dist.share(problem)
            if problem:
                raise MtlbenchError(problem)
            _train(cfg, run_dir, resume, overwrite, console, err, dist)
        finally:
            shutdown()


def _check_resume_world(run_dir: Path, world: int) -> None:
    """A run resumes in as many processes as it trained in (its log says how many)."""
    from mtlbench.engine.trainer import Trainer, world_size_error  # lazy: imports torch

    logged = Trainer.read_log(RunDir(run_dir).log)
    if logged and int(logged[-1].get("world", 1)) != world:
        raise MtlbenchError(world_size_error(int(logged[-1].get("world", 1)), world))


def _launch(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool, nproc: int) -> None:
    """``run`` again in ``nproc`` processes through torchrun, everything checked first: a new run
    from its resolved configuration written out (``run --config``), a resumed one from its own."""
    import tempfile

    from mtlbench import config as C  # lazy: tomllib and dataclasses, not needed for --help
    from mtlbench.engine.distributed import check_nproc, launch  # lazy: imports torch

    check_nproc(nproc, cfg.train.device)
    if resume:
        code = launch(nproc, ["--run-dir", str(run_dir), "--resume", "--device", cfg.train.device])
    else:
        with tempfile.TemporaryDirectory(prefix="mtlbench-launch-") as folder:
            written = Path(folder) / "config.toml"
            written.write_text(C.dumps(cfg))
            code = launch(nproc, ["--config", str(written), "--run-dir", str(run_dir)]
                          + (["--overwrite"] if overwrite else []))
    if code:
        raise typer.Exit(code)


def _per_process(cfg: RunConfig, world: int) -> str:
    return f" ({cfg.train.batch_size // world} in each of {world} processes)" if world > 1 else ""


def _speed(cfg: RunConfig, parts: Any) -> str:
    t = cfg.train
    return " ".join([parts.precision] + (["channels_last"] if t.channels_last else [])
                    + ([f"compiled ({t.compile_mode})"] if parts.compile else [])
                    + (["sync-bn"] if t.sync_bn and parts.dist.active else []))


def _train(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool, console: Console, err: Console,
           dist: Any = None) -> None:
    from mtlbench.config import resolved_select  # lazy: tomllib and dataclasses, not needed for --help
    from mtlbench.report.console import RichReporter, metrics_table  # lazy: rich.progress, not needed for --help
    from mtlbench.workflows.train import train_run  # lazy: imports torch

    def progress(done: int, total: int) -> None:
        if done == total or done % 256 < 32:
            err.print(f"rendering synthrooms: {done}/{total} frames", highlight=False)

    def header(parts: Any) -> None:
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

    main = dist is None or dist.main
    with RichReporter(err) if main else nullcontext() as reporter:
        result = train_run(cfg, run_dir, resume=resume, replace=overwrite, dist=dist, progress=progress,
                           reporter=reporter, header=header)
    if not main:
        return
    console.print(metrics_table(result["test"], f"test metrics ({cfg.model.name}, best epoch "
                                                f"{result['best_epoch']} of {result['epochs']}, "
                                                f"{result['sizes']['test']} frames)"))
    err.print(f"written: {RunDir(run_dir).metrics}", highlight=False)


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="nyuv2")],
    mat: Annotated[Path, typer.Option(help="nyu_depth_v2_labeled.mat (MATLAB v7.3)")],
    out: Annotated[Path, typer.Option(help="folder for the cache; pass it to `run --data-root`")],
    size: Annotated[int, typer.Option(help="square side in pixels; 0 keeps 480x640")] = 256,
    classes: Annotated[int, typer.Option(help="40, 13 or 894")] = 40,
    raw_depth: Annotated[bool, typer.Option("--raw-depth",
                                            help="rawDepths with holes (0) instead of in-painted depths")] = False,
) -> None:
    """Read the labeled NYUv2 file frame by frame and write the cache later runs read."""
    from rich.progress import (  # lazy: only this command draws its own bar; not needed for --help
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    err = _console(stderr=True)
    with _one_line_errors():
        if dataset != "nyuv2":
            raise MtlbenchError(f"nothing to prepare for {dataset!r}: `data prepare` knows nyuv2 "
                                f"(synthrooms renders itself, nyud_mt folders are read directly)")
        from mtlbench.data.nyuv2 import prepare_nyuv2  # lazy: imports torch

        columns = (TextColumn("[bold]preparing nyuv2"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        bar = Progress(*columns, console=err)
        task = bar.add_task("frames", total=None)

        def progress(done: int, total: int) -> None:
            bar.start()  # on the first frame: checks that fail earlier print nothing but their line
            bar.update(task, completed=done, total=total)

        try:
            result = prepare_nyuv2(mat, out, size, classes, raw_depth, progress=progress)
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

    err = _console(stderr=True)
    with _one_line_errors():
        folder = out if out is not None else Path(name)
        written = new_plugin(name, kind, folder)
    for path in written:
        err.print(f"written: {path}", highlight=False, markup=False)
    err.print(f"next: pip install -e {folder} && mtlbench list {registry_kind(kind)}", highlight=False, markup=False)


@app.command()
def cost(
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

    _one_line_warnings()
    console = _console()
    err = _console(stderr=True)
    with _one_line_errors():
        if markdown is not None:
            check_writable(markdown)
        given = {"model.name": model, "tasks": task, "model.backbone": backbone, "data.size": size,
                 "model.options.interaction": interaction, "train.device": device}
        flags = {"model": {"interaction": "--interaction"}} if interaction is not None else {}
        cfg = _make_config(None if config else "seed", config, {k: v for k, v in given.items() if v is not None},
                           flags, set_)
        report = config_cost(cfg, batch_size, repeats, progress=lambda line: err.print(line, highlight=False))
        tables = cost_tables(report)
        for table in tables:
            console.print(to_rich(table))
        if len(report.tasks) == 1:
            err.print("one task: no multi-task comparison (pass several tasks to compare against single-task "
                      "models)", highlight=False)
        if markdown is not None:
            write_atomic(markdown, to_markdown(tables))
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
    figures: Annotated[int, typer.Option(help="also draw this many samples (the seed's 2×3 grid) and the "
                                              "training curves into RUN_DIR/figures")] = 0,
) -> None:
    """Re-evaluate a run's checkpoint on a split with every metric; writes it into RUN_DIR/metrics.json."""

    _one_line_warnings()
    console = _console()
    err = _console(stderr=True)
    with _one_line_errors():
        from mtlbench.report.console import metrics_table  # lazy: rich.progress, not needed for --help
        from mtlbench.workflows.evaluate import evaluate_with_figures  # lazy: imports torch

        options = _eval_overrides(min_depth, max_depth, eigen_crop, boundaries, edge_tolerance, edge_thresholds,
                                  edge_nms, edge_matching, resolution)
        with err.status(f"evaluating {run_dir} ({split}, {checkpoint} checkpoint)"):
            metrics = evaluate_with_figures(run_dir, split, checkpoint, device, options, figures)
    info = metrics["eval"][split]
    console.print(metrics_table(metrics[split], f"{split} metrics ({metrics['model']}, {checkpoint} checkpoint, "
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

    with _one_line_errors():
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
            console = _console()
            for table in tables:
                for part in to_rich_fitted(table, console.width):
                    console.print(part)
        elif out is not None:
            write_atomic(out, render(tables, fmt), "--out")
            _console(stderr=True).print(f"written: {out}", highlight=False)
        else:
            typer.echo(render(tables, fmt), nl=False)


@app.command()
def ablate(
    spec: Annotated[Path, typer.Argument(help="a sweep spec (TOML; see benchmarks/ablations/)")],
    out: Annotated[Path | None, typer.Option(help="the sweep's folder: plan, tables, figure "
                                                  "(default runs/ablations/NAME-PRESET)")] = None,
    preset: Annotated[str | None, typer.Option(help="another preset than the spec names (seed: the paper's "
                                                    "protocol, for a GPU)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE laid over the spec's base, e.g. "
                                                                 "data.name=nyuv2 (repeatable)")] = None,
    seeds: Annotated[str | None, typer.Option(help="seeds in place of the spec's, e.g. 0,1,2,3,4")] = None,
    store: Annotated[Path | None, typer.Option(help="where the runs go (default OUT/runs); sweeps sharing a store "
                                                    "share the runs they have in common")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and print the plan, run nothing")] = False,
    shard: Annotated[str | None, typer.Option(help="run only part I of N of the runs (I/N): shards are disjoint "
                                                   "and together complete")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="runs at once in worker processes (one GPU each where "
                                                           "there are GPUs)")] = 1,
    executor: Annotated[str, typer.Option(help="local, slurm (a job array through submitit), or submitit-local "
                                               "(the same path on this machine)")] = "local",
    report_only: Annotated[bool, typer.Option("--report-only", help="tabulate the finished runs, train "
                                                                    "nothing")] = False,
) -> None:
    """Run an ablation sweep (cells × seeds, each an ordinary run directory, resumable) and write
    its table (mean ± std, Δm, significance) and figure."""
    from mtlbench.ablation import sweep as S  # lazy: imports the config machinery
    from mtlbench.settings import parse_sets

    _one_line_warnings()
    console = _console()
    err = _console(stderr=True)
    with _one_line_errors():
        index, count = S.parse_shard(shard)
        S.check_run_options(jobs, executor)
        plan = S.prepare(spec, out, store, preset, parse_sets(set_ or []), S.parse_seeds(seeds))
        columns = S.columns_of(plan)
        mine = plan.shard(index, count)
        counts = S.summary(plan, mine)
        todo = [j for j in mine if S.state(j) not in ("done", "running")]  # a running one is another's
        part = f" (shard {index}/{count}: {len(mine)} of {len(plan.jobs)} runs)" if count > 1 else ""
        err.print(f"[bold]mtlbench ablate[/] {escape(plan.spec.name)}: {len(plan.spec.cells)} cells × "
                  f"{len(plan.spec.seeds)} seeds + {plan.reference_runs} reference runs = {len(plan.jobs)} runs{part}",
                  highlight=False)
        err.print("; ".join(f"{n} {s}" for s, n in counts.items() if n) + f" | runs in {plan.store}", highlight=False,
                  markup=False)
        if dry_run:
            names = S.describe(plan)
            for job in mine:
                err.print(f"  {S.state(job):8} {names[job.run_dir]}: {job.run_dir}", highlight=False, markup=False,
                          soft_wrap=True)
            return
        S.write_manifest(plan)
        progress = S.Progress(S.describe(plan), len(todo), lambda line: err.print(line, highlight=False,
                                                                                  markup=False, soft_wrap=True))
        if not report_only:
            try:
                S.execute(plan, todo, jobs, executor, progress)
            except KeyboardInterrupt:
                then = ("the submitted jobs go on; --report-only tabulates them" if executor != "local"
                        else "the same command resumes the sweep")
                err.print(f"interrupted: {progress.done} of {len(todo)} runs finished and are kept; {then}",
                          highlight=False, markup=False)
                raise typer.Exit(130) from None
        from mtlbench.ablation.report import sweep_table, write_outputs  # lazy: not needed for --help
        from mtlbench.report.tables import to_rich_fitted  # lazy: not needed for --help

        table = sweep_table(plan, columns, " ".join(["mtlbench ablate", str(spec)]
                                                    + ([f"--preset {preset}"] if preset else [])
                                                    + [f"--set {x}" for x in set_ or []]
                                                    + ([f"--seeds {seeds}"] if seeds else [])))
        for t in to_rich_fitted(table, console.width):
            console.print(t)
        for path in write_outputs(plan, table, columns):
            err.print(f"written: {path}", highlight=False, markup=False)
    if progress.failed:
        raise typer.Exit(EXIT_FAILED)


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
    (.png) and the seed's 2×3 figure per image, plus attention maps for guided attention."""

    _one_line_warnings()
    err = _console(stderr=True)
    with _one_line_errors():
        from mtlbench.workflows.predict import predict_images  # lazy: imports torch

        written = predict_images(run_dir, images, out, depth or (), labels or (), depth_scale, checkpoint, device)
    for path in written:
        err.print(f"written: {path}", highlight=False)


def bare_flags(argv: list[str]) -> list[str]:
    """A bare ``--compile`` (no on/off/auto after it) reads as ``--compile=on``: click has no
    option whose value may be left out."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--compile" and (i + 1 == len(out) or out[i + 1] not in ("on", "off", "auto")):
            out[i] = "--compile=on"
    return out


def main() -> None:
    """Console-script entry point."""
    sys.argv[1:] = bare_flags(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
