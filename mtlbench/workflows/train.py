"""One training workflow: build a resolved configuration's run, train it, test its best
checkpoint and write its directory. ``mtlbench run``, ``ablate``'s local workers and its Slurm
jobs all train through :func:`train_run`, so a run resumes the same way whoever started it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtlbench.config import RunConfig
from mtlbench.engine.build import RunParts, build_run
from mtlbench.engine.distributed import Dist
from mtlbench.engine.trainer import Reporter, Trainer


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
