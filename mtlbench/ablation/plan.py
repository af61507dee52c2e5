"""From a :class:`~mtlbench.ablation.spec.Spec` to the runs a sweep needs, each resolved and
checked before any of them starts, and what state each one's directory is in.

Every (cell, seed) and every (reference task, seed) is one ordinary run directory in the store,
named by a hash of its resolved ``config.toml``: the same configuration is the same directory, so
finished runs are found again by any sweep that needs them (references shared between cells and
between sweeps that use one ``--store``), and a changed setting is a new run, never a stale one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlbench import config as C
from mtlbench import settings as S
from mtlbench.ablation.spec import Cell, Settings, Spec
from mtlbench.errors import MtlbenchError
from mtlbench.rundir import RunDir

ERROR_FILE = "ablate-error.txt"  # a failed run's error, removed when it succeeds
STATES = ("done", "running", "partial", "failed", "corrupt", "missing")


@dataclass(frozen=True)
class Job:
    """One run of the sweep: its resolved configuration and its directory."""

    config: str  # the resolved config.toml text
    run_dir: Path
    seed: int
    tasks: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.run_dir.name


@dataclass
class Plan:
    spec: Spec
    out: Path
    store: Path
    jobs: list[Job]  # unique, in a stable order: cells by row and axes, then references
    cells: dict[str, dict[int, Job]]  # cell label → seed → job
    references: dict[str, dict[str, dict[int, Job]]]  # cell label → task → seed → job
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # cell label → its tasks

    @property
    def reference_runs(self) -> int:
        """Runs only references need (a reference that is also a cell counts as a cell)."""
        return len(self.jobs) - len({j.run_dir for by_seed in self.cells.values() for j in by_seed.values()})

    def shard(self, index: int, count: int) -> list[Job]:
        """Jobs ``index`` (1-based) of ``count``: every ``count``-th job, so shards are disjoint and
        together complete whatever is already done."""
        return [j for i, j in enumerate(self.jobs) if i % count == index - 1]


def apply(cfg: C.RunConfig, settings: Settings, where: str) -> C.RunConfig:
    """``cfg`` with a sweep's dotted ``settings`` laid over it as ``run`` lays its flags
    (:func:`mtlbench.settings.apply`); ``train.seed`` is the spec's ``seeds``."""
    if "train.seed" in settings:
        raise MtlbenchError(f"{where}: train.seed is set by the spec's seeds = [...], not by a setting")
    return S.apply(cfg, settings, where)


def identity(cfg: C.RunConfig) -> str:
    """A stable name for a resolved configuration: the hash of its ``config.toml``."""
    return hashlib.sha256(C.dumps(cfg).encode()).hexdigest()[:12]


def _job(cfg: C.RunConfig, store: Path) -> Job:
    name = f"{cfg.model.name}-{'-'.join(cfg.tasks)}-s{cfg.train.seed}-{identity(cfg)}"
    return Job(C.dumps(cfg), store / name, cfg.train.seed, tuple(cfg.tasks))


def base_config(spec: Spec) -> C.RunConfig:
    """The spec's preset or config file with ``[base]`` laid over it (not yet resolved)."""
    try:
        start = C.load(spec.config) if spec.config is not None else C.preset(spec.preset)
        return apply(start, spec.base, "base")
    except MtlbenchError as exc:
        raise MtlbenchError(f"{spec.path}: {exc}") from None


def _resolved(base: C.RunConfig, layers: list[tuple[Settings, str]], seed: int, tasks: list[str] | None,
              what: str) -> C.RunConfig:
    from mtlbench.engine.build import resolve  # lazy: imports torch

    try:
        cfg = copy.deepcopy(base)  # resolve() fills tables in place
        for settings, where in layers:
            cfg = apply(cfg, settings, where)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        if tasks is not None:
            one = dataclasses.replace(cfg, tasks=list(tasks))
            S.rebase(one, cfg)
            cfg = one
        resolve(cfg)
    except MtlbenchError as exc:
        raise MtlbenchError(f"{what}: {exc}") from None
    return cfg


def _followed(cell: Cell, prefixes: tuple[str, ...]) -> Settings:
    return {k: v for k, v in cell.settings.items() if any(k == p or k.startswith(p) for p in prefixes)}


def make_plan(spec: Spec, out: Path, store: Path | None = None) -> Plan:
    """Resolve every cell and reference for every seed; the first problem is one error line
    naming the cell, and nothing has been written."""
    store = store if store is not None else out / "runs"
    base = base_config(spec)
    jobs: dict[Path, Job] = {}
    cells: dict[str, dict[int, Job]] = {}
    tasks: dict[str, tuple[str, ...]] = {}
    refs: dict[str, dict[str, dict[int, Job]]] = {}
    for cell in spec.cells:
        cells[cell.label] = {}
        for seed in spec.seeds:
            cfg = _resolved(base, [(cell.settings, "setting")], seed, None,
                            f"{spec.path}: cell {cell.label!r}")
            job = jobs.setdefault(_job(cfg, store).run_dir, _job(cfg, store))
            cells[cell.label][seed] = job
            tasks[cell.label] = job.tasks
    r = spec.references
    if r is not None:
        for cell in spec.cells:
            if len(tasks[cell.label]) < 2:
                continue
            wanted = r.tasks or list(base.tasks)
            unknown = [t for t in wanted if t not in tasks[cell.label]]
            if len(unknown) == len(wanted):
                continue  # none of this cell's tasks has a reference
            refs[cell.label] = {}
            for task in (t for t in wanted if t in tasks[cell.label]):
                refs[cell.label][task] = {}
                for seed in spec.seeds:
                    layers = [(r.set, "references.set"), (_followed(cell, r.follow), "setting")]
                    cfg = _resolved(base, layers, seed, [task],
                                    f"{spec.path}: the {task} reference of cell {cell.label!r}")
                    job = jobs.setdefault(_job(cfg, store).run_dir, _job(cfg, store))
                    refs[cell.label][task][seed] = job
    return Plan(spec, out, store, list(jobs.values()), cells, refs, tasks)


# -- what a run directory holds ------------------------------------------------------------------

def _trained_test(metrics: dict[str, Any], cfg: C.RunConfig) -> dict[str, Any] | None:
    """The test numbers the run itself wrote: the best checkpoint under the config's ``[eval]``
    (``mtlbench eval`` with other settings or ``--checkpoint last`` replaces ``metrics["test"]``
    and keeps the run's own numbers in ``history``)."""
    expected = dataclasses.asdict(cfg.eval)
    if cfg.eval.edge_matching == "auto":
        expected["edge_matching"] = "exact"  # what the final test resolves it to

    def ours(record: Any) -> bool:
        return isinstance(record, dict) and record.get("checkpoint") == "best" and \
            all(record.get(k) == v for k, v in expected.items())

    if ours(metrics.get("eval", {}).get("test")) and isinstance(metrics.get("test"), dict):
        return metrics["test"] or None
    for h in metrics.get("history", []):
        if isinstance(h, dict) and h.get("split") == "test" and ours(h) and isinstance(h.get("result"), dict):
            return h["result"] or None
    return None


def test_result(job: Job) -> dict[str, Any] | None:
    """The finished run's test metrics when its ``metrics.json`` is whole, belongs to this job's
    configuration and holds the run's own evaluation, else ``None``: a half-written or foreign
    directory is never averaged."""
    rd = RunDir(job.run_dir)
    try:
        metrics = json.loads(rd.metrics.read_text())
        cfg = C.load(rd.config)
    except (OSError, ValueError, MtlbenchError):
        return None
    if C.dumps(cfg) != job.config or not isinstance(metrics, dict):
        return None
    return _trained_test(metrics, cfg)


# -- one process at a time per run directory -------------------------------------------------------

def lock_path(job: Job) -> Path:
    return job.run_dir.with_name(job.run_dir.name + ".lock")


def lock_owner(job: Job) -> str | None:
    """``host:pid`` of the live process training ``job``, or ``None``. A lock left by a process
    of this host that is gone is stale and ignored; another host's lock is taken at its word."""
    try:
        owner = lock_path(job).read_text().strip()
    except OSError:
        return None
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return owner or None


def acquire(job: Job) -> bool:
    """Take ``job``'s lock (False: another live process holds it)."""
    path = lock_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and lock_owner(job) is None:
        path.unlink(missing_ok=True)  # stale
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()}:{os.getpid()}\n")
    return True


def release(job: Job) -> None:
    lock_path(job).unlink(missing_ok=True)


def state(job: Job, locked_by_me: bool = False) -> str:
    """``done`` (the run's own test numbers in a whole ``metrics.json``), ``running`` (another
    live process holds its lock; not asked when ``locked_by_me``), ``failed`` (its error
    recorded), ``partial`` (a checkpoint to resume from), ``corrupt`` (anything else in the
    folder: rerun from scratch) or ``missing``."""
    rd = RunDir(job.run_dir)
    if test_result(job) is not None:
        return "done"
    if not locked_by_me and lock_owner(job) is not None:
        return "running"
    if not job.run_dir.exists():
        return "missing"
    if (job.run_dir / ERROR_FILE).is_file():
        return "failed"
    try:
        same = C.dumps(C.load(rd.config)) == job.config
    except MtlbenchError:
        same = False
    if same and rd.last.is_file() and not rd.metrics.exists():
        return "partial"
    return "corrupt" if any(job.run_dir.iterdir()) else "missing"


def error_of(job: Job) -> str:
    """The first line of a failed run's recorded error."""
    try:
        return (job.run_dir / ERROR_FILE).read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return "failed"
