"""One training workflow: build a resolved configuration's run, train it, test its best
checkpoint and write its directory. ``mtlbench run``, ``ablate``'s local workers and its Slurm
jobs all train through :func:`train_run`, so a run resumes the same way whoever started it;
:func:`start` adds what ``run`` does around it (the run directory's checks, several processes).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtlbench import config as C
from mtlbench.config import RunConfig
from mtlbench.engine.build import RunParts, build_run
from mtlbench.engine.checkpoints import read_log, world_size_error
from mtlbench.engine.distributed import Dist, check_nproc, environment, init, launch, shutdown
from mtlbench.engine.trainer import Reporter, Trainer
from mtlbench.errors import MtlbenchError
from mtlbench.rundir import RunDir


def train_run(cfg: RunConfig, run_dir: Path, *, resume: bool = False, replace: bool = False,
              dist: Dist | None = None, progress: Callable[[int, int], None] | None = None,
              reporter: Reporter | None = None, header: Callable[[RunParts], None] | None = None,
              callbacks: list[Callable[[int, dict[str, Any]], None]] | None = None) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` and return its ``metrics.json``.

    Args:
        resume: continue the run from its ``last.pt`` (its configuration is the run's own, built
            under the rules it was made under: no new-run checks).
        replace: remove what ``run_dir`` holds first (a new run over an old one).
        dist: the processes training together (rank 0 alone writes).
        progress: ``progress(done, total)`` while the dataset is made.
        reporter: what the trainer tells the outside world (rank 0's).
        header: called with the built run before the first epoch (rank 0), for the run header.
        callbacks: ``callback(epoch, record)`` after each epoch (the trainer's).
    """
    parts = build_run(cfg, progress=progress, dist=dist, new=not resume)
    main = parts.dist.main
    if main:
        if replace and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    parts.dist.barrier()
    if main and header is not None:
        header(parts)
    trainer = Trainer(parts, run_dir, reporter if main else None, callbacks)
    return trainer.fit(resume=resume)


def check_run_dir(run_dir: Path, resume: bool, replace: bool) -> None:
    """``run_dir`` can take the run: an existing run to resume, or a new folder (an old run only
    where ``replace`` says so)."""
    if resume and replace:
        raise MtlbenchError("resume and overwrite contradict each other: choose one")
    if resume:
        if not RunDir(run_dir).is_run():
            raise MtlbenchError(f"nothing to resume in {run_dir}: no config.toml there; start a new run instead")
        return
    if run_dir.exists():
        if not run_dir.is_dir():
            raise MtlbenchError(f"run directory {run_dir} is a file: choose another run directory")
        if not replace:
            raise MtlbenchError(f"run directory {run_dir} already exists: to continue it, resume; to replace it, "
                                f"overwrite; or choose another run directory")
        if any(run_dir.iterdir()) and not RunDir(run_dir).is_run():
            raise MtlbenchError(f"refusing to overwrite {run_dir}: it is not an mtlbench run directory")


def check_resume_world(run_dir: Path, world: int) -> None:
    """A run resumes in as many processes as it trained in (its log says how many)."""
    logged = read_log(RunDir(run_dir).log)
    if logged and int(logged[-1].get("world", 1)) != world:
        raise MtlbenchError(world_size_error(int(logged[-1].get("world", 1)), world))


def launch_run(cfg: RunConfig, run_dir: Path, resume: bool, replace: bool, nproc: int) -> int:
    """``mtlbench run`` again in ``nproc`` processes through torchrun, everything checked first:
    a new run from its resolved configuration written out (``run --config``), a resumed one from
    its own. Returns torchrun's exit code."""
    check_nproc(nproc, cfg.train.device)
    if resume:
        return launch(nproc, ["--run-dir", str(run_dir), "--resume", "--device", cfg.train.device])
    with tempfile.TemporaryDirectory(prefix="mtlbench-launch-") as folder:
        written = Path(folder) / "config.toml"
        written.write_text(C.dumps(cfg))
        return launch(nproc, ["--config", str(written), "--run-dir", str(run_dir)]
                      + (["--overwrite"] if replace else []))


def start(cfg: RunConfig, run_dir: Path, *, resume: bool, replace: bool, nproc: int | None,
          train: Callable[[Path, Dist], None]) -> int:
    """Check ``run_dir``, then call ``train(run_dir, dist)`` in this process (in each of
    torchrun's, where torchrun started this one), or launch ``nproc`` processes that do; returns
    an exit code. Rank 0 checks and names the directory; every rank gets its answer."""
    if resume:
        check_resume_world(run_dir, nproc or environment().world)
    if nproc is not None:
        check_run_dir(run_dir, resume, replace)
        return launch_run(cfg, run_dir, resume, replace, nproc)
    dist = init(cfg.train.device)  # alone unless torchrun started this process
    try:
        run_dir = dist.share(run_dir)  # rank 0's, whose clock named it
        problem = None
        if dist.main:  # the others would see the folder rank 0 creates
            try:
                check_run_dir(run_dir, resume, replace)
            except MtlbenchError as exc:
                problem = str(exc)
        problem = dist.share(problem)
        if problem:
            raise MtlbenchError(problem)
        train(run_dir, dist)
    finally:
        shutdown()
    return 0
