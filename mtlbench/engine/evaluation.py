"""Scoring a split: how it is scored (:class:`EvalPlan`: the ``[eval]`` settings with ``auto``
resolved, and the resolution scored at) and :func:`evaluate`, every task's loss and metrics over
it, the frames split between the processes.

Separate from :mod:`mtlbench.engine.trainer` because ``mtlbench eval`` (:mod:`mtlbench.engine.runs`,
:mod:`mtlbench.workflows.evaluate`) scores a checkpoint without a trainer; the trainer calls the
same code for validation every epoch and for the test of the best checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.data.datasets import DenseDataset, Scoring
from mtlbench.engine.build import RunParts
from mtlbench.engine.distributed import Dist
from mtlbench.tasks import DatasetInfo, Task


@dataclass(frozen=True)
class EvalPlan:
    """How one split is scored: the ``[eval]`` settings with ``auto`` resolved, and the ground
    truth of another resolution or crop where the protocol scores there."""

    options: EvalConfig
    scoring: Scoring | None
    size: tuple[int, int]  # the scored resolution

    @property
    def scored(self) -> str:
        h, w = self.size
        return f"{h}×{w} " + (self.scoring.note if self.scoring else "at the input resolution")


def eval_plan(cfg: Any, dataset: DenseDataset, final: bool) -> EvalPlan:
    """``final``: the test of the best checkpoint or ``mtlbench eval`` (exact edge matching and the
    protocol's resolution under ``auto``); otherwise validation during training."""
    e = cfg.eval
    matching = e.edge_matching if e.edge_matching != "auto" else ("exact" if final else "fast")
    native = final and e.resolution == "auto" and dataset.scoring is not None
    scoring = dataset.scoring if native else None
    size = scoring.size if scoring else (cfg.data.size, cfg.data.size)
    return EvalPlan(dataclasses.replace(e, edge_matching=matching), scoring, size)


def eval_record(plan: EvalPlan, checkpoint: str, epoch: int, device: torch.device) -> dict[str, Any]:
    """What ``metrics.json`` records of how a split was evaluated: checkpoint, its epoch, device,
    the ``[eval]`` settings used and the pixels scored."""
    return {"checkpoint": checkpoint, "epoch": epoch, "device": str(device), **dataclasses.asdict(plan.options),
            "scored": plan.scored, "scored_size": list(plan.size)}


def shard(n: int, dist: Dist) -> Tensor:
    """This rank's frames of an evaluated split of ``n``: every world-th, from its rank."""
    return torch.arange(dist.rank, n, dist.world)


def metric_targets(tasks: dict[str, Task], batch: dict[str, Tensor], info: DatasetInfo) -> dict[str, Tensor]:
    """The targets metrics score ``batch`` (a pipeline batch, or scoring ground truth) against:
    each task's :meth:`~mtlbench.tasks.base.Task.score_target` over what the batch holds."""
    return {**batch, **{t.target_key: t.score_target(batch, info) for t in tasks.values()}}


@torch.no_grad()
def evaluate(parts: RunParts, dataset: DenseDataset, autocast: Any = None,
             on_batch: Callable[[dict[str, Tensor], dict[str, Any], dict[str, Tensor]], None] | None = None,
             plan: EvalPlan | None = None) -> dict[str, dict[str, float]]:
    """Losses and metrics (as ``plan`` says; default: validation's) of every task over ``dataset``,
    unaugmented. Losses are taken at the input resolution; metrics where ``plan`` scores.

    ``on_batch(batch, outputs, predictions)`` sees each batch after its metrics are accumulated
    (progress bars, figures), predictions at the input resolution.
    """
    p, t = parts, parts.cfg.train
    plan = plan or eval_plan(p.cfg, dataset, final=False)
    p.model.eval()
    metrics = {name: task.metrics(plan.options) for name, task in p.tasks.items()}
    # sums stay on the device until the end: no host sync per batch
    loss_sums = torch.zeros(len(p.tasks) + 1, dtype=torch.float64, device=p.device)
    frames = shard(len(dataset), p.dist).to(dataset.device)
    for s in range(0, len(frames), t.eval_batch_size):
        idx = frames[s:s + t.eval_batch_size]
        raw = dataset.batch(idx)
        batch = p.pipeline(raw, train=False)
        with autocast or nullcontext():
            out = p.model(batch["image"])
        b = batch["image"].shape[0]
        scoring = plan.scoring
        targets = metric_targets(p.tasks, scoring.batch(idx, p.device, p.info) if scoring else batch, p.info)
        preds = {}
        for i, (name, task) in enumerate(p.tasks.items()):
            loss_sums[i] += p.losses[name](out[name], batch).detach().double() * b
            preds[name] = task.predict(scoring.resize(out[name]) if scoring else out[name])
            metrics[name].update(preds[name], targets)
        loss_sums[-1] += b
        if on_batch is not None:  # figures draw at the input resolution, beside the input image
            on_batch(batch, out, {n: task.predict(out[n]) for n, task in p.tasks.items()} if scoring else preds)
    sums = p.dist.sum_(loss_sums).tolist()
    for m in metrics.values():
        m.reduce(p.dist, p.device)
    result = {name: {"loss": sums[i] / max(sums[-1], 1), **metrics[name].compute()}
              for i, name in enumerate(p.tasks)}
    result["total"] = {"loss": sum(r["loss"] for r in result.values())}
    return result
