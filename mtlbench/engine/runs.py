"""Working with a run directory: its config rebuilt for inference, its checkpoints, re-evaluation.

Nothing here draws: figures are the business of :mod:`mtlbench.report` and the workflows in
:mod:`mtlbench.workflows` that combine both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlbench import config as C
from mtlbench.data.datasets import DenseDataset
from mtlbench.engine.build import RunParts, build_inference, build_run
from mtlbench.engine.checkpoints import load_checkpoint
from mtlbench.engine.evaluation import EvalPlan, eval_plan, eval_record
from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write
from mtlbench.rundir import CHECKPOINTS, RunDir
from mtlbench.tasks import DatasetInfo

SPLITS = ("train", "val", "test")


def ensure_folder(path: Path, what: str) -> None:
    """Create ``path`` (and parents) or fail with one line naming ``what``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MtlbenchError(f"{what} {path}: a file is in the way; choose another folder") from None
    except OSError as exc:
        raise MtlbenchError(f"{what} {path} cannot be created ({exc.strerror or exc}): choose another folder") from None


def load_run_config(run_dir: Path, device: str | None = None,
                    eval_options: dict[str, Any] | None = None) -> C.RunConfig:
    """The run's config, ready to rebuild it for inference: no pretrained download (the checkpoint
    holds the weights), an optional device and ``[eval]`` overrides."""
    rd = RunDir(run_dir)
    if not rd.is_run():
        raise MtlbenchError(f"{run_dir} is not an mtlbench run directory (no config.toml)")
    cfg = C.load(rd.config)
    cfg.model.pretrained = False
    cfg.model.weights = ""
    if device:
        cfg.train.device = device
    if eval_options:
        cfg = C.from_dict({"eval": eval_options}, cfg, where="option")
    C.validate(cfg)
    return cfg


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which not in CHECKPOINTS:
        raise MtlbenchError(f"checkpoint {which!r}: choose best or last")
    path = RunDir(run_dir).checkpoint(which)
    if not path.is_file():
        raise MtlbenchError(f"{path} not found: the run saved no {which} checkpoint yet (train it first)")
    return path


def load_weights(parts: RunParts, path: Path, ckpt: dict[str, Any] | None = None) -> int:
    """Checkpoint weights (``ckpt``, read from ``path`` when not given) into ``parts.model``;
    returns the checkpoint's epoch."""
    ckpt = load_checkpoint(path, parts.device) if ckpt is None else ckpt
    if list(ckpt.get("tasks", [])) != list(parts.tasks):
        raise MtlbenchError(f"{path} holds tasks {ckpt.get('tasks')} but the run's config has {list(parts.tasks)}")
    try:
        parts.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MtlbenchError(f"{path} does not fit the model of config.toml ({first})") from None
    return int(ckpt.get("epoch", 0))


@dataclass
class Evaluation:
    """One split of a run, rebuilt with a checkpoint's weights, ready for
    :func:`mtlbench.engine.evaluation.evaluate`."""

    run: RunDir
    parts: RunParts
    split: str
    checkpoint: str
    epoch: int

    @property
    def dataset(self) -> DenseDataset:
        return self.parts.dataset_splits()[self.split]

    @property
    def plan(self) -> EvalPlan:
        """Scored as a final test is: exact edge matching and the protocol's resolution under ``auto``."""
        return eval_plan(self.parts.cfg, self.dataset, final=True)

    def autocast(self) -> Any:
        return self.parts.autocast()


def open_evaluation(run_dir: Path, split: str = "test", checkpoint: str = "best", device: str | None = None,
                    eval_options: dict[str, Any] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Rebuild ``run_dir`` with a checkpoint for evaluating ``split``; every check comes first."""
    if split not in SPLITS:
        raise MtlbenchError(f"split {split!r}: choose from {', '.join(SPLITS)}")
    cfg = load_run_config(run_dir, device, eval_options)
    ckpt_path = checkpoint_path(run_dir, checkpoint)
    parts = build_run(cfg, progress=progress, training=False, new=False)
    epoch = load_weights(parts, ckpt_path)
    if len(parts.dataset_splits()[split]) == 0:
        raise MtlbenchError(f"the {split} split of this run is empty")
    return Evaluation(RunDir(run_dir), parts, split, checkpoint, epoch)


def _same_evaluation(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two history entries of one split, checkpoint and settings (when and where aside)."""
    def key(e: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in e.items() if k not in ("result", "device")}
    return key(a) == key(b)


def record_evaluation(ev: Evaluation, result: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Store one split's ``result`` in the run's ``metrics.json``; returns the file.

    ``metrics[split]`` holds the latest evaluation, as ``compare`` reads it. ``history`` keeps
    every evaluation with its settings: one evaluated with other settings (another checkpoint,
    another ``[eval]`` option) is added beside the earlier ones, the same settings again replace
    their entry.
    """
    cfg, parts = ev.parts.cfg, ev.parts
    path = ev.run.metrics
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}  # a damaged file is rewritten whole
    metrics.update({"model": cfg.model.name, "backbone": cfg.model.backbone, "tasks": list(parts.tasks),
                    "dataset": cfg.data.name})
    metrics.setdefault("sizes", {s: len(parts.dataset_splits()[s]) for s in SPLITS})
    history = [h for h in metrics.get("history", []) if isinstance(h, dict)]
    earlier = metrics.get(ev.split)
    if isinstance(earlier, dict):  # the run's own numbers (or an older file's) join the history first
        entry = {"split": ev.split, **metrics.get("eval", {}).get(ev.split, {}), "result": earlier}
        if not any(_same_evaluation(entry, h) for h in history):
            history.append(entry)
    record = eval_record(ev.plan, ev.checkpoint, ev.epoch, parts.device)
    new = {"split": ev.split, **record, "result": result}
    metrics["history"] = [h for h in history if not _same_evaluation(h, new)] + [new]
    metrics[ev.split] = result
    metrics.setdefault("eval", {})[ev.split] = record
    atomic_write(path, lambda f: f.write(json.dumps(metrics, indent=2) + "\n"), mode="w")
    return metrics


def inference_parts(run_dir: Path, device: str | None, checkpoint: str) -> RunParts:
    """The run's model with a checkpoint's weights, in eval mode, built without its dataset when the
    checkpoint records the dataset's facts."""
    cfg = load_run_config(run_dir, device)
    path = checkpoint_path(run_dir, checkpoint)
    ckpt = load_checkpoint(path)
    saved = ckpt.get("info")
    if saved:  # the checkpoint knows its dataset: no need to build it
        info = DatasetInfo.from_dict(saved)
        parts = build_inference(cfg, info)
    else:
        parts = build_run(cfg, training=False, new=False)
    load_weights(parts, path, ckpt)
    parts.model.eval()
    return parts
