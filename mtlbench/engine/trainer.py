"""Training, validation every epoch, best-by-validation checkpoint, test with the best.

The run directory's files are :class:`mtlbench.rundir.RunDir`'s. Each step, the model's forward
gives the outputs, the task losses are computed, and the run's weighting owns the backward
(:mod:`mtlbench.weighting.base`); the trainer knows nothing of weighting methods.

Checkpoints and ``metrics.json`` are written to a temporary file and renamed, so a file that
exists is complete. Every epoch reseeds from (seed, epoch), so an interrupted run resumed from
``last.pt`` reaches the same numbers as one that was never interrupted.

With several processes (:mod:`mtlbench.engine.distributed`) ``train.batch_size`` is the global
batch: each rank takes its contiguous share of every global batch of the same epoch order, draws
the augmentation of the whole global batch from the step's seed and applies its rows, so N
processes see exactly the batches one process would. Gradients are averaged after the
weighting's backward; evaluation splits the frames between the ranks and reduces the metrics'
sums; rank 0 alone writes the run directory.

The data feeding is :mod:`mtlbench.engine.feeding`, scoring a split
:mod:`mtlbench.engine.evaluation`, and the checkpoint and log files
:mod:`mtlbench.engine.checkpoints`; each also serves code that has no trainer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mtlbench.config import criterion, dumps
from mtlbench.data.datasets import DenseDataset
from mtlbench.engine.build import RunParts
from mtlbench.engine.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, read_log, save_checkpoint, world_size_error
from mtlbench.engine.evaluation import EvalPlan, eval_plan, eval_record, evaluate, shard
from mtlbench.engine.feeding import batches, check_world, epoch_seed, step_seed
from mtlbench.errors import MtlbenchError, NonFiniteLossError
from mtlbench.fileio import atomic_write
from mtlbench.metrics.records import lookup
from mtlbench.models.base import AUX, SHARED
from mtlbench.rundir import RunDir
from mtlbench.weighting import GradientWeighting


class Reporter(Protocol):
    """What the trainer tells the outside world; the CLI draws progress bars from it."""

    def start(self, phase: str, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, losses: dict[str, float] | None) -> None: ...
    def finish(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def start(self, phase: str, epoch: int, epochs: int, steps: int) -> None:
        pass

    def advance(self, losses: dict[str, float] | None) -> None:
        pass

    def finish(self, record: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


# the loss's finiteness is checked (a host sync) every this many steps and at the end of an epoch
CHECK_EVERY = 10


def task_losses(losses: dict[str, Any], out: dict[str, Any], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each task's loss; a model may add deep supervision as ``out["aux"]``, a list of
    ``{task: output}`` at any resolution (upsampled bilinearly to the target), each adding one
    term to its task's loss."""
    result = {t: fn(out[t], batch) for t, fn in losses.items()}
    for extra in out.get(AUX, ()):
        for t, y in extra.items():
            size = out[t].shape[-2:]
            if y.shape[-2:] != size:
                y = torch.nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)
            result[t] = result[t] + losses[t](y, batch)
    return result


class FiniteWatch:
    """Remembers, on the device, the first step whose losses were not finite, so that the host
    looks only every few steps."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.seen = torch.zeros((), dtype=torch.bool, device=device)
        self.bad = torch.zeros(n, dtype=torch.bool, device=device)
        self.values = torch.zeros(n, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)

    def add(self, values: Tensor, step: int) -> None:
        bad = ~torch.isfinite(values)
        new = bad.any() & ~self.seen
        self.bad = torch.where(new, bad, self.bad)
        self.values = torch.where(new, values, self.values)
        self.step = torch.where(new, step, self.step)
        self.seen |= new

    def first(self) -> tuple[list[int], float, int]:
        """The losses that were not finite (indices), the first one's value, the step; nothing
        when all were finite here."""
        if not bool(self.seen):
            return [], float("nan"), 0
        bad = self.bad.nonzero().flatten().tolist()
        return bad, float(self.values[bad[0]]), int(self.step)


class CompiledStep:
    """``torch.compile`` of the forward and losses. With ``auto``, a failure of the compiler
    (said once) leaves the step eager; otherwise it is one error line."""

    def __init__(self, fn: Callable[[dict[str, Tensor]], Any], when: str, mode: str, reporter: Reporter) -> None:
        self.eager = fn
        self.compiled = torch.compile(fn, mode=mode)
        self.auto = when == "auto"
        self.cudagraphs = mode in ("reduce-overhead", "max-autotune")
        self.reporter = reporter
        self.failed = False

    def __call__(self, batch: dict[str, Tensor]) -> Any:
        if self.failed:
            return self.eager(batch)
        try:
            if self.cudagraphs:  # each step replays; outputs of the previous one may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            return self.compiled(batch)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # the compiler's errors have no common type
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if not self.auto:
                raise MtlbenchError(f"train.compile on: torch.compile failed ({reason[:300]}); set train.compile to "
                                    f"auto to train eager where it cannot compile, or to off") from None
            self.reporter.message(f"warning: torch.compile failed ({reason[:200]}); training eager")
            self.failed = True
            return self.eager(batch)


def is_better(higher: bool, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new > old if higher else new < old


class Trainer:
    """Trains ``parts.model`` into ``run_dir``.

    Args:
        parts: what :func:`mtlbench.engine.build.build_run` made.
        run_dir: an existing, writable folder (on rank 0; the others only read it).
        reporter: progress sink (rank 0's; the other ranks report nothing).
        callbacks: called as ``cb(epoch, record)`` after each epoch is saved (tests use it to
            interrupt a run).
    """

    def __init__(self, parts: RunParts, run_dir: Path, reporter: Reporter | None = None,
                 callbacks: list[Callable[[int, dict[str, Any]], None]] | None = None) -> None:
        self.p = parts
        self.cfg = parts.cfg
        self.dist = parts.dist
        self.files = RunDir(run_dir)
        self.reporter = reporter if reporter is not None and self.dist.main else SilentReporter()
        self.callbacks = callbacks or []
        t = self.cfg.train
        check_world(t.batch_size, len(parts.dataset_splits().train), self.dist.world)
        parts.weighting.dist = self.dist
        self.params = list(parts.model.parameters()) + list(parts.weighting.parameters())
        # a gradient-level weighting averaged the shared parameters' gradients already (its Jacobian)
        done = {id(p) for p in parts.model.shared_parameters()} \
            if isinstance(parts.weighting, GradientWeighting) and parts.weighting.averages_shared else set()
        self.to_average = [p for p in self.params if id(p) not in done]
        fused = parts.device.type == "cuda"  # one kernel for the whole update
        self.optimizer = torch.optim.Adam(self.params, lr=t.lr, weight_decay=t.weight_decay, fused=fused)
        self.scaler = torch.amp.GradScaler("cuda") if parts.precision == "fp16" else None
        self.epoch = 0  # epochs finished
        self.best_value: float | None = None
        self.best_epoch = 0
        c = criterion(self.cfg)
        self.select_name = str(c)
        self.select = (c.task, c.metric)
        # a metric with no better side (higher_is_better None) is minimised, as a loss is
        self.select_higher = c.metric != "loss" and lookup(c.task, c.metric).higher_is_better is True
        self.autocast = parts.autocast()
        self.forward_losses: Callable[[dict[str, Tensor]], tuple[dict[str, Any], dict[str, Tensor]]] = \
            self._forward_losses
        if parts.compile:
            self.forward_losses = CompiledStep(self._forward_losses, t.compile, t.compile_mode, self.reporter)

    # -- one step -------------------------------------------------------------------------
    def compute_losses(self, out: dict[str, Any], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return task_losses(self.p.losses, out, batch)

    def _forward_losses(self, batch: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        with self.autocast:
            out = self.p.model(batch["image"])
        return out, self.compute_losses(out, batch)

    def train_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward, losses, the weighting's backward and the gradients' average over the ranks;
        returns the logged total and the losses. The optimiser step is the caller's."""
        out, losses = self.forward_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        # fp16's loss scale only when there is one: weightings written before it keep working
        scaled = {"scale": self.scaler.scale(torch.ones((), device=self.p.device))} if self.scaler else {}
        total = self.p.weighting.backward(losses, self.p.model, out.get(SHARED), **scaled)
        self.dist.average_grads(self.to_average)
        return total, losses

    def after_step(self, batch: dict[str, Tensor]) -> None:
        """The weighting's update after the optimiser step; the losses it may ask for are of the
        same batch, with batch-norm statistics left as the step made them."""
        def recompute() -> dict[str, Tensor]:
            norms = [m for m in self.p.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.momentum = 0.0
            try:
                with torch.no_grad():
                    return self.forward_losses(batch)[1]
            finally:
                for m, momentum in zip(norms, momenta):
                    m.momentum = momentum
        self.p.weighting.after_step(recompute)

    def optimizer_step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
        else:  # skips the step where the scaled gradients overflowed, and adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()

    # -- epochs ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        p, t, d = self.p, self.cfg.train, self.dist
        p.model.train()
        p.weighting.train()
        seed = epoch_seed(t.seed, epoch)
        torch.manual_seed(seed)  # weightings and models that draw do so from the global generator
        train = p.dataset_splits().train
        n = len(train)
        steps = n // t.batch_size if n >= t.batch_size else 1
        share = t.batch_size // d.world
        self.reporter.start("train", epoch, t.epochs, steps)
        n_tasks = len(p.tasks)
        sums = torch.zeros(n_tasks + 1, device=p.device)  # per task, then the total
        weights = torch.zeros(n_tasks, device=p.device)  # the weights the method applied, summed
        weighted = 0
        watch = FiniteWatch(2 * n_tasks + 1, p.device)
        count = 0
        after = p.weighting.updates_after_step
        for step, raw in enumerate(batches(train, t.batch_size, True, seed, True, (d.rank, d.world)), 1):
            batch = p.pipeline(raw, train=True, seed=step_seed(seed, step),
                               span=(d.rank * share, t.batch_size) if d.active else None)
            total, losses = self.train_step(batch)
            values = torch.stack([*(losses[k].detach().float() for k in p.tasks), total.float()])
            applied = p.weighting.applied
            if applied is not None:
                weights += applied.to(weights)
                weighted += 1
            watch.add(torch.cat([values, applied.to(values) if applied is not None else values.new_zeros(n_tasks)]),
                      step)
            if step % CHECK_EVERY == 0 or step == steps:
                self._check_finite(watch, epoch)
            self.optimizer_step()
            if after:
                self.after_step(batch)
            sums += values
            count += 1
            if (step % 5 == 0 or step == steps) and not isinstance(self.reporter, SilentReporter):
                self.reporter.advance(dict(zip([*p.tasks, "total"], (sums / count).tolist())))  # a host sync
            else:
                self.reporter.advance(None)
        d.average_(sums)
        means = sums / max(count, 1)
        p.weighting.end_epoch(means[:n_tasks])
        record = dict(zip([*p.tasks, "total"], means.tolist()))
        if weighted:
            record["weights"] = dict(zip(p.tasks, (weights / weighted).tolist()))
        return record

    def _check_finite(self, watch: FiniteWatch, epoch: int) -> None:
        if not self.dist.any(watch.seen):
            return
        names = list(self.p.tasks)
        n = len(names)
        bad, value, step = watch.first()
        tasks = [names[i] for i in bad if i < n]
        weights = [names[i - n - 1] for i in bad if i > n]
        if tasks:
            what = f"loss of task {', '.join(tasks)} became {value} at epoch {epoch} step {step}"
        elif weights:
            what = (f"weighting {self.cfg.weighting.name} gave task {', '.join(weights)} a weight of {value} "
                    f"at epoch {epoch} step {step}")
        elif bad:
            what = f"the total of weighting {self.cfg.weighting.name} became {value} at epoch {epoch} step {step}"
        else:
            what = f"a loss or weight became non-finite in another process at epoch {epoch}"
        raise NonFiniteLossError(f"{what}; training stopped, last good checkpoint {self.files.last} "
                                 f"(epoch {self.epoch}) left intact")

    def evaluate(self, dataset: DenseDataset, phase: str = "val", epoch: int = 0,
                 plan: EvalPlan | None = None) -> dict[str, dict[str, float]]:
        """Losses and metrics of every task over one split (no augmentation)."""
        self.dist.average_buffers(self.p.model)  # every rank evaluates the model rank 0 saves
        self.reporter.start(phase, epoch, self.cfg.train.epochs,
                            math.ceil(len(shard(len(dataset), self.dist)) / self.cfg.train.eval_batch_size))
        return evaluate(self.p, dataset, self.autocast, on_batch=lambda *_: self.reporter.advance(None), plan=plan)

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.p.model.state_dict(),
            "weighting": self.p.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "tasks": list(self.p.tasks),
            "info": self.p.info.to_dict(),
            "world": self.dist.world,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise MtlbenchError(f"checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}: "
                                f"start a new run (overwrite this one or choose another run directory)")
        world = int(ckpt.get("world", 1))
        if world != self.dist.world:
            raise MtlbenchError(world_size_error(world, self.dist.world))
        self.p.model.load_state_dict(ckpt["model"])
        self.p.weighting.load_state_dict(ckpt["weighting"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = int(ckpt["epoch"])
        self.best_value = ckpt["best_value"]
        self.best_epoch = int(ckpt["best_epoch"])

    # -- the whole run --------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train the remaining epochs, then test the best checkpoint; returns ``metrics.json``."""
        cfg, d = self.cfg, self.dist
        rd = self.files
        log_path = rd.log
        if resume and rd.last.is_file():
            self.restore(load_checkpoint(rd.last, self.p.device))
            self.reporter.message(f"resuming after epoch {self.epoch} of {cfg.train.epochs}")
            if d.main:
                self._truncate_log(log_path)
        elif d.main:
            atomic_write(rd.config, lambda f: f.write(dumps(cfg)), mode="w")
            log_path.write_text("")
        while self.epoch < cfg.train.epochs:
            epoch = self.epoch + 1
            t0 = time.perf_counter()
            train_losses = self.train_epoch(epoch)
            val = self.evaluate(self.p.dataset_splits().val, "val", epoch)
            task, metric = self.select
            value = val[task][metric] if metric in val.get(task, {}) else None
            if value is None:
                raise MtlbenchError(f"train.select {self.select_name!r}: validation has no {metric} for "
                                    f"{task}; choose from {', '.join(val[task])}")
            improved = is_better(self.select_higher, value, self.best_value)
            self.epoch = epoch
            if improved:
                self.best_value, self.best_epoch = value, epoch
                if d.main:
                    save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": self.p.model.state_dict(),
                                     "tasks": list(self.p.tasks), "info": self.p.info.to_dict()}, rd.best)
            applied = train_losses.pop("weights", None)
            record = {"epoch": epoch, "train": train_losses, "val": val, "select": value,
                      "best": improved, "time_s": round(time.perf_counter() - t0, 3)}
            if applied is not None:  # the mean weight the method gave each task this epoch
                record["weights"] = applied
            if d.world > 1:
                record["world"] = d.world
            if d.main:
                with log_path.open("a") as f:  # logged before last.pt, so resume never loses the line
                    f.write(json.dumps(record) + "\n")
                save_checkpoint(self.state(), rd.last)
            d.barrier()  # no rank runs ahead of the saved epoch
            self.reporter.finish(record)
            for cb in self.callbacks:
                cb(epoch, record)
        return self.finalize()

    def finalize(self) -> dict[str, Any]:
        """Test the best checkpoint and write ``metrics.json``."""
        rd = self.files
        best = load_checkpoint(rd.best, self.p.device)
        self.p.model.load_state_dict(best["model"])
        splits = self.p.dataset_splits()
        plans = {"val": eval_plan(self.cfg, splits.val, final=False),
                 "test": eval_plan(self.cfg, splits.test, final=True)}
        val = self.evaluate(splits.val, "val (best)", self.best_epoch, plans["val"])
        test = self.evaluate(splits.test, "test", self.best_epoch, plans["test"])
        result = {
            "test": test,
            "val": val,
            "best_epoch": self.best_epoch,
            "select": {"criterion": self.select_name, "value": self.best_value},
            "epochs": self.epoch,
            "model": self.cfg.model.name,
            "backbone": self.cfg.model.backbone,
            "tasks": list(self.p.tasks),
            "dataset": self.cfg.data.name,
            "sizes": {s: len(splits[s]) for s in ("train", "val", "test")},
            "device": str(self.p.device),
            "precision": self.p.precision,
            "processes": self.dist.world,
            "train_time_s": round(sum(r["time_s"] for r in read_log(rd.log)), 2),
            "eval": {s: eval_record(plans[s], "best", self.best_epoch, self.p.device) for s in ("val", "test")},
        }
        if self.dist.main:
            atomic_write(rd.metrics, lambda f: f.write(json.dumps(result, indent=2) + "\n"), mode="w")
        return result

    def _truncate_log(self, path: Path) -> None:
        # epochs logged after the checkpoint was written will run again
        keep = [json.dumps(r) for r in read_log(path) if r["epoch"] <= self.epoch]
        atomic_write(path, lambda f: f.write("".join(line + "\n" for line in keep)), mode="w")
