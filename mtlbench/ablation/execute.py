"""Running a sweep's jobs: in this process, in local worker processes (one GPU each where there
are GPUs), or as a Slurm job array through submitit.

:func:`run_job` is the one thing every executor calls; it needs nothing but the job, so it can be
pickled to a worker or a Slurm node. It trains the run through the training workflow
``mtlbench run`` uses (:func:`mtlbench.workflows.train.train_run`) (resuming a run
with a checkpoint, starting over in a folder that holds anything else) and returns an outcome
instead of raising, recording a failure's error in the run directory so the sweep can report it.
Torch is imported inside the functions: a spawned worker sets its GPU and threads first.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mtlbench.ablation.plan import ERROR_FILE, Job, acquire, lock_owner, release, state
from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    seconds: float  # wall time of the whole job, building included
    error: str = ""
    busy: bool = False  # another process was training it: neither done nor failed here


def _resumable(job: Job) -> bool:
    from mtlbench.engine.checkpoints import load_checkpoint  # lazy: imports torch

    if state(job, locked_by_me=True) != "partial":
        return False
    try:
        load_checkpoint(job.run_dir / "last.pt")
        return True
    except MtlbenchError:  # a checkpoint cut short: start over
        return False


def run_job(job: Job) -> Outcome:
    """Train ``job`` to its ``metrics.json`` under its lock; any exception becomes a failed outcome
    recorded in ``ERROR_FILE`` (KeyboardInterrupt is not caught: the run resumes next time). A run
    another live process holds is left to it."""
    start = time.perf_counter()
    if not acquire(job):
        return Outcome(False, 0.0, error=f"another process trains it ({lock_owner(job)}); left to it", busy=True)
    try:
        return _train(job, start)
    finally:
        release(job)


def _train(job: Job, start: float) -> Outcome:
    from mtlbench import config as C
    from mtlbench.workflows.train import train_run  # lazy: imports torch

    try:
        cfg = C.loads(job.config, str(job.run_dir / "config.toml"))
        resume = _resumable(job)
        train_run(cfg, job.run_dir, resume=resume, replace=not resume)
    except Exception as exc:  # one run's failure must not stop the sweep
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        line = f"{type(exc).__name__}: {first}" if not isinstance(exc, MtlbenchError) else first
        try:
            job.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(job.run_dir / ERROR_FILE, lambda f: f.write(line + "\n\n" + traceback.format_exc()),
                         mode="w")
        except OSError:
            pass
        return Outcome(False, time.perf_counter() - start, error=line)
    (job.run_dir / ERROR_FILE).unlink(missing_ok=True)
    return Outcome(True, time.perf_counter() - start)


Report = Callable[[Job, Outcome], None]


def run_here(jobs: Sequence[Job], report: Report, started: Callable[[Job], None]) -> None:
    """One job after the other in this process."""
    for job in jobs:
        started(job)
        report(job, run_job(job))


def _init_worker(slots: Any, gpus: Sequence[str], threads: int) -> None:
    """Pin a spawned worker to one of ``gpus`` (round robin over the parent's visible devices) or
    to ``threads`` CPU threads, before it imports torch; Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def visible_gpus(count: int) -> list[str]:
    """The ids of the ``count`` GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (a
    Slurm allocation's mask is kept)."""
    mask = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (mask or [str(i) for i in range(count)])[:count]


def run_pool(jobs: Sequence[Job], workers: int, report: Report, gpus: Sequence[str]) -> None:
    """``workers`` spawned processes, each taking the next job; a worker that dies fails its job
    (and the jobs the broken pool could not start), and the sweep goes on reporting. Ctrl-C stops
    the workers at once; their runs resume next time."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # fork would copy a process that may hold CUDA
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(i)
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(slots, list(gpus), threads))
    try:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = Outcome(False, time.perf_counter() - start,
                                  error="its worker process died (killed, or out of memory)")
            report(job, outcome)
    except BaseException:
        # the executor has no public way to stop running work before Python 3.14
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def check_executor(name: str) -> None:
    """An unknown executor, or submitit missing for one that needs it: one line, before anything runs."""
    if name not in EXECUTORS:
        raise MtlbenchError(f"unknown executor {name!r}: choose from {', '.join(EXECUTORS)}")
    if name != "local":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise MtlbenchError(f"executor {name} submits through submitit, which is not installed: "
                                f"pip install 'mtlbench[slurm]'") from None


def slurm_parameters(spec_executor: dict[str, Any], name: str) -> dict[str, Any]:
    """The spec's ``[executor]`` table as submitit parameters (``slurm_*`` ones only reach Slurm)."""
    from mtlbench.ablation.spec import EXECUTOR_KEYS

    params = {EXECUTOR_KEYS[k]: v for k, v in spec_executor.items()}
    params.setdefault("timeout_min", 60)
    params["name"] = f"mtlbench-{name}"
    return params


def run_submitit(jobs: Sequence[Job], folder: Any, cluster: str, params: dict[str, Any], report: Report,
                 submitted: Callable[[str], None]) -> None:
    """Every job as one task of a job array (``cluster`` "slurm", or "local" to try a spec on
    this machine), waiting for each; an interrupted wait leaves the jobs running."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**params)
    start = time.perf_counter()
    handles = executor.map_array(run_job, list(jobs))
    if handles:
        submitted(str(handles[0].job_id).split("_")[0])
    for handle, job in zip(handles, jobs):
        try:
            outcome = handle.result()
        except Exception as exc:  # the job itself died (time limit, node failure, ...)
            line = str(exc).strip().splitlines()
            outcome = Outcome(False, time.perf_counter() - start,
                              error=f"{type(exc).__name__}: {line[0] if line else ''}")
        report(job, outcome)
