"""Training, validation every epoch, best-by-validation checkpoint, test with the best.

The run directory's files are :class:`mtlbench.rundir.RunDir`'s. Each step, the model's forward
gives the outputs, the task losses are computed, and the run's weighting owns the backward
(:mod:`mtlbench.weighting.base`); the trainer knows nothing of weighting methods.

Checkpoints and ``metrics.json`` are written to a temporary file and renamed, so a file that
exists is complete. Every epoch reseeds from (seed, epoch), so an interrupted run resumed from
``last.pt`` reaches the same numbers as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from mtlbench.config import criterion, dumps
from mtlbench.data.datasets import DenseDataset
from mtlbench.engine.build import RunParts
from mtlbench.errors import MtlbenchError, NonFiniteLossError
from mtlbench.fileio import atomic_write
from mtlbench.metrics.records import lookup
from mtlbench.models.base import AUX, SHARED
from mtlbench.rundir import RunDir

CHECKPOINT_FORMAT = 1


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


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise MtlbenchError(f"checkpoint {path} not found") from None
    except Exception as exc:
        raise MtlbenchError(f"checkpoint {path} cannot be read ({type(exc).__name__}); "
                            f"it may be from another mtlbench version or corrupt") from None


def info_dict(info: Any) -> dict[str, Any]:
    """The dataset facts a checkpoint keeps, so that ``predict`` needs no dataset."""
    return {"num_classes": info.num_classes, "max_depth": info.max_depth, "class_names": list(info.class_names),
            "ignore_index": info.ignore_index}


def eval_record(cfg: Any, checkpoint: str, epoch: int, device: torch.device) -> dict[str, Any]:
    """What ``metrics.json`` records of how a split was evaluated: checkpoint, its epoch, device
    and the ``[eval]`` settings."""
    return {"checkpoint": checkpoint, "epoch": epoch, "device": str(device), **dataclasses.asdict(cfg.eval)}


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def batches(dataset: DenseDataset, batch_size: int, shuffle: bool, seed: int,
            drop_last: bool = False) -> Iterator[dict[str, Tensor]]:
    """Raw batches by slicing the split's arrays; the order depends only on ``seed``."""
    n = len(dataset)
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle
             else torch.arange(n))
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for s in range(0, stop, batch_size):
        yield dataset.batch(order[s:s + batch_size])


@torch.no_grad()
def evaluate(parts: RunParts, dataset: DenseDataset, autocast: Any = None,
             on_batch: Callable[[dict[str, Tensor], dict[str, Any], dict[str, Tensor]], None] | None = None,
             ) -> dict[str, dict[str, float]]:
    """Losses and metrics (as ``parts.cfg.eval`` says) of every task over ``dataset``, unaugmented.

    ``on_batch(batch, outputs, predictions)`` sees each batch after its metrics are accumulated
    (progress bars, figures).
    """
    p, t = parts, parts.cfg.train
    p.model.eval()
    metrics = {name: task.metrics(p.cfg.eval) for name, task in p.tasks.items()}
    loss_sums = {name: 0.0 for name in p.tasks}
    n_images = 0
    for raw in batches(dataset, t.eval_batch_size, False, 0):
        batch = p.pipeline(raw, train=False)
        with autocast or nullcontext():
            out = p.model(batch["image"])
        b = batch["image"].shape[0]
        preds = {}
        for name, task in p.tasks.items():
            loss_sums[name] += float(p.losses[name](out[name], batch)) * b
            preds[name] = task.predict(out[name])
            metrics[name].update(preds[name], batch)
        n_images += b
        if on_batch is not None:
            on_batch(batch, out, preds)
    result = {name: {"loss": loss_sums[name] / max(n_images, 1), **metrics[name].compute()} for name in p.tasks}
    result["total"] = {"loss": sum(r["loss"] for r in result.values())}
    return result


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


def is_better(higher: bool, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new > old if higher else new < old


class Trainer:
    """Trains ``parts.model`` into ``run_dir``.

    Args:
        parts: what :func:`mtlbench.engine.build.build_run` made.
        run_dir: an existing, writable folder.
        reporter: progress sink.
        callbacks: called as ``cb(epoch, record)`` after each epoch is saved (tests use it to
            interrupt a run).
    """

    def __init__(self, parts: RunParts, run_dir: Path, reporter: Reporter | None = None,
                 callbacks: list[Callable[[int, dict[str, Any]], None]] | None = None) -> None:
        self.p = parts
        self.cfg = parts.cfg
        self.files = RunDir(run_dir)
        self.reporter = reporter or SilentReporter()
        self.callbacks = callbacks or []
        params = list(parts.model.parameters()) + list(parts.weighting.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.cfg.train.lr, weight_decay=self.cfg.train.weight_decay)
        self.epoch = 0  # epochs finished
        self.best_value: float | None = None
        self.best_epoch = 0
        c = criterion(self.cfg)
        self.select_name = str(c)
        self.select = (c.task, c.metric)
        # a metric with no better side (higher_is_better None) is minimised, as a loss is
        self.select_higher = c.metric != "loss" and lookup(c.task, c.metric).higher_is_better is True
        dev = parts.device.type
        self.autocast = (torch.autocast(dev, dtype=torch.bfloat16) if self.cfg.train.bf16
                         else nullcontext())

    # -- one step -------------------------------------------------------------------------
    def compute_losses(self, out: dict[str, Any], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return task_losses(self.p.losses, out, batch)

    def train_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward, losses, and the weighting's backward; returns the logged total and the losses."""
        with self.autocast:
            out = self.p.model(batch["image"])
        losses = self.compute_losses(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        total = self.p.weighting.backward(losses, self.p.model, out.get(SHARED))
        return total, losses

    # -- epochs ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        p, t = self.p, self.cfg.train
        p.model.train()
        p.weighting.train()
        seed = epoch_seed(t.seed, epoch)
        torch.manual_seed(seed)  # augmentation draws from the global generator
        train = p.dataset_splits().train
        n = len(train)
        steps = n // t.batch_size if n >= t.batch_size else 1
        self.reporter.start("train", epoch, t.epochs, steps)
        sums: dict[str, Tensor] = {}
        count = 0
        for step, raw in enumerate(batches(train, t.batch_size, True, seed, drop_last=True), 1):
            batch = p.pipeline(raw, train=True)
            total, losses = self.train_step(batch)
            if not torch.isfinite(total):
                bad = [k for k, v in losses.items() if not torch.isfinite(v)] or ["total (weighting)"]
                raise NonFiniteLossError(
                    f"loss of task {', '.join(bad)} became {float(total.detach())} at epoch {epoch} step {step}; "
                    f"training stopped, last good checkpoint {self.files.last} "
                    f"(epoch {self.epoch}) left intact")
            self.optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v.detach()
            sums["total"] = sums.get("total", 0) + total.detach()
            count += 1
            self.reporter.advance({k: float(v) / count for k, v in sums.items()} if step % 5 == 0 or step == steps
                                  else None)
        return {k: float(v) / max(count, 1) for k, v in sums.items()}

    def evaluate(self, dataset: DenseDataset, phase: str = "val", epoch: int = 0) -> dict[str, dict[str, float]]:
        """Losses and metrics of every task over one split (no augmentation)."""
        self.reporter.start(phase, epoch, self.cfg.train.epochs,
                            math.ceil(len(dataset) / self.cfg.train.eval_batch_size))
        return evaluate(self.p, dataset, self.autocast, on_batch=lambda *_: self.reporter.advance(None))

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.p.model.state_dict(),
            "weighting": self.p.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "tasks": list(self.p.tasks),
            "info": info_dict(self.p.info),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise MtlbenchError(f"checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}: "
                                f"start a new run (--overwrite)")
        self.p.model.load_state_dict(ckpt["model"])
        self.p.weighting.load_state_dict(ckpt["weighting"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["epoch"])
        self.best_value = ckpt["best_value"]
        self.best_epoch = int(ckpt["best_epoch"])

    # -- the whole run --------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train the remaining epochs, then test the best checkpoint; returns ``metrics.json``."""
        cfg = self.cfg
        rd = self.files
        log_path = rd.log
        if resume and rd.last.is_file():
            self.restore(load_checkpoint(rd.last, self.p.device))
            self.reporter.message(f"resuming after epoch {self.epoch} of {cfg.train.epochs}")
            self._truncate_log(log_path)
        else:
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
                save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": self.p.model.state_dict(),
                                 "tasks": list(self.p.tasks), "info": info_dict(self.p.info)}, rd.best)
            record = {"epoch": epoch, "train": train_losses, "val": val, "select": value,
                      "best": improved, "time_s": round(time.perf_counter() - t0, 3)}
            with log_path.open("a") as f:  # logged before last.pt, so resume never loses the line
                f.write(json.dumps(record) + "\n")
            save_checkpoint(self.state(), rd.last)
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
        val = self.evaluate(splits.val, "val (best)", self.best_epoch)
        test = self.evaluate(splits.test, "test", self.best_epoch)
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
            "train_time_s": round(sum(r["time_s"] for r in self.read_log(rd.log)), 2),
            "eval": {s: eval_record(self.cfg, "best", self.best_epoch, self.p.device) for s in ("val", "test")},
        }
        atomic_write(rd.metrics, lambda f: f.write(json.dumps(result, indent=2) + "\n"), mode="w")
        return result

    @staticmethod
    def read_log(path: Path) -> list[dict[str, Any]]:
        """The log's epochs; a line cut short by a crash is skipped."""
        records = []
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def _truncate_log(self, path: Path) -> None:
        # epochs logged after the checkpoint was written will run again
        keep = [json.dumps(r) for r in self.read_log(path) if r["epoch"] <= self.epoch]
        atomic_write(path, lambda f: f.write("".join(line + "\n" for line in keep)), mode="w")
