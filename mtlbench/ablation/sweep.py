"""``mtlbench ablate``: plan a sweep, check it whole, run what is missing, write its table.

The sweep's folder (``--out``) holds ``sweep.json`` (the spec as run and where each cell's runs
are), ``table.{md,tex,csv,json}`` and ``figure.png``; the runs themselves live in the store
(``OUT/runs`` unless ``--store`` names one to share between sweeps).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlbench.ablation.execute import (
    Outcome,
    check_executor,
    run_here,
    run_pool,
    run_submitit,
    slurm_parameters,
    visible_gpus,
)
from mtlbench.ablation.plan import STATES, Job, Plan, make_plan, state
from mtlbench.ablation.report import check_columns, default_columns
from mtlbench.ablation.spec import load_spec
from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write
from mtlbench.spellings import preset_name

MANIFEST = "sweep.json"


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 1, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise MtlbenchError(f"shard {text!r}: write I/N with 1 <= I <= N, e.g. 1/2")
    return index, count


def check_out(out: Path, name: str) -> None:
    """``out`` is new, empty, or this sweep's folder; anything else is refused."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            held = json.loads(manifest.read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            held = None
        if held != name:
            raise MtlbenchError(f"out {out} holds sweep {held!r}, not {name!r}: choose another folder")
    elif out.exists() and (not out.is_dir() or any(p.name != "runs" for p in out.iterdir())):
        raise MtlbenchError(f"out {out} exists and is not a sweep folder: choose another folder")


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise MtlbenchError(f"seeds {text!r}: write distinct non-negative integers separated by commas, e.g. 0,1,2")
    return seeds


def prepare(spec_path: Path, out: Path | None, store: Path | None, preset: str | None = None,
            sets: dict[str, Any] | None = None, seeds: list[int] | None = None) -> Plan:
    """Read, check and resolve the whole sweep, with ``preset``, ``sets`` and ``seeds`` in place of
    the spec's; nothing is written."""
    spec = load_spec(spec_path)
    spec.seeds = seeds or spec.seeds
    if preset is not None:
        if spec.config is not None:
            raise MtlbenchError(f"preset {preset!r}: {spec_path} starts from config {spec.config}, not a preset")
        spec.preset = preset_name(preset)
    spec.base.update(sets or {})
    out = out if out is not None else Path("runs") / "ablations" / f"{spec.name}-{spec.preset}"
    check_out(out, spec.name)
    plan = make_plan(spec, out, store)
    check_columns(spec.columns + [k for c in spec.cells for k in c.published], str(spec_path))
    return plan


def columns_of(plan: Plan) -> list[str]:
    return plan.spec.columns or default_columns(plan)


def describe(plan: Plan) -> dict[Path, str]:
    """What each job is, for progress lines: its cell and seed, or the reference it is."""
    names: dict[Path, str] = {}
    for label, by_seed in plan.cells.items():
        for seed, job in by_seed.items():
            names.setdefault(job.run_dir, f"{label!r} seed {seed}")
    for by_task in plan.references.values():
        for task, by_seed in by_task.items():
            for seed, job in by_seed.items():
                names.setdefault(job.run_dir, f"{task} reference seed {seed}")
    return names


def summary(plan: Plan, jobs: list[Job]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for j in jobs:
        counts[state(j)] += 1
    return counts


def _dirs(by_seed: dict[int, Job]) -> dict[str, str]:
    return {str(s): str(j.run_dir) for s, j in by_seed.items()}


def write_manifest(plan: Plan) -> None:
    spec = plan.spec
    data: dict[str, Any] = {
        "name": spec.name, "spec_path": str(spec.path), "spec": spec.text, "seeds": spec.seeds,
        "store": str(plan.store),
        "cells": {label: _dirs(by_seed) for label, by_seed in plan.cells.items()},
        "references": {label: {t: _dirs(by_seed) for t, by_seed in by_task.items()}
                       for label, by_task in plan.references.items()},
    }
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write(plan.out / MANIFEST, lambda f: f.write(json.dumps(data, indent=2) + "\n"), mode="w")


@dataclass
class Progress:
    """Counts outcomes and hands each line to ``print``."""

    names: dict[Path, str]
    total: int
    print: Callable[[str], None]
    done: int = 0
    failed: int = 0

    def started(self, job: Job) -> None:
        self.print(f"[{self.done + 1}/{self.total}] {self.names[job.run_dir]}: training ({job.run_dir})")

    def report(self, job: Job, outcome: Outcome) -> None:
        self.done += 1
        if outcome.busy:
            self.print(f"[{self.done}/{self.total}] {self.names[job.run_dir]}: skipped, {outcome.error}")
        elif outcome.ok:
            self.print(f"[{self.done}/{self.total}] {self.names[job.run_dir]}: done in {outcome.seconds:.0f} s")
        else:
            self.failed += 1
            self.print(f"[{self.done}/{self.total}] {self.names[job.run_dir]}: FAILED ({outcome.error}); the others "
                       f"go on, a rerun retries it")


def execute(plan: Plan, jobs: list[Job], workers: int, executor: str, progress: Progress) -> None:
    """Run ``jobs`` with the executor chosen (all checks already passed)."""
    if not jobs:
        return
    plan.store.mkdir(parents=True, exist_ok=True)
    if executor != "local":
        cluster = "slurm" if executor == "slurm" else "local"
        params = slurm_parameters(plan.spec.executor, plan.spec.name)
        run_submitit(jobs, plan.out / "submitit", cluster, params, progress.report,
                     lambda job_id: progress.print(f"submitted job array {job_id} ({len(jobs)} tasks) through "
                                                   f"submitit ({cluster}); logs in {plan.out / 'submitit'}"))
    elif workers == 1:
        run_here(jobs, progress.report, progress.started)
    else:
        import torch  # lazy: only a pool needs the GPU count

        run_pool(jobs, workers, progress.report, visible_gpus(torch.cuda.device_count()))


def check_run_options(workers: int, executor: str) -> None:
    check_executor(executor)
    if workers < 1:
        raise MtlbenchError(f"jobs {workers}: run at least 1 job at a time")
    if workers > 1 and executor != "local":
        raise MtlbenchError(f"jobs applies to the local executor; {executor} runs as many at once as the "
                            f"spec's [executor] array_parallelism allows")
