"""From a :class:`RunConfig` to the objects a run needs, every check done before anything is written."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from mtlbench.config import RunConfig, resolved_select, validate
from mtlbench.data.datasets import DatasetSplits, apply_clahe, check_nonempty
from mtlbench.data.pipeline import BatchPipeline
from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.registry import DATASETS, INTERACTIONS, LOSSES, MODELS, WEIGHTINGS
from mtlbench.tasks import DatasetInfo, Task, build_tasks, parse_tasks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MtlbenchError(f"device {name} asked for, but torch sees no CUDA GPU: use --device cpu or auto")
    return torch.device(name)


def call_with_accepted(factory: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Call ``factory`` with the keyword options its signature accepts (all if it takes **kwargs)."""
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    return factory(*args, **options)


@dataclass
class RunParts:
    cfg: RunConfig
    device: torch.device
    tasks: dict[str, Task]
    model: nn.Module
    losses: dict[str, nn.Module]
    weighting: nn.Module
    splits: DatasetSplits | None  # None when built for inference only
    pipeline: BatchPipeline
    notes: list[str]  # lines for the run header
    info: DatasetInfo  # the dataset facts tasks were built from (also without ``splits``)


def check_names(cfg: RunConfig) -> tuple[str, ...]:
    """Names of tasks, model, dataset and losses exist and fit together; returns the tasks."""
    tasks = parse_tasks(cfg.tasks)
    entry = MODELS.entry(cfg.model.name)
    served = entry.meta.get("tasks")
    if served is not None:
        bad = [t for t in tasks if t not in served]
        if bad:
            raise MtlbenchError(f"model {cfg.model.name} cannot serve task {', '.join(bad)}: "
                                f"it serves {', '.join(served)}")
    min_batch = int(entry.meta.get("min_batch", 1))
    if cfg.train.batch_size < min_batch:
        raise MtlbenchError(f"model {cfg.model.name} needs --batch-size {min_batch} or more (batch statistics "
                            f"in training), got {cfg.train.batch_size}")
    if entry.meta.get("single_task") and len(tasks) != 1:
        raise MtlbenchError(f"model {cfg.model.name} is a single-task baseline: pass one of "
                            f"{', '.join(served or ())} (got {', '.join(tasks)})")
    DATASETS.entry(cfg.data.name)
    WEIGHTINGS.entry(cfg.loss.weighting)
    if cfg.model.interaction:
        INTERACTIONS.entry(cfg.model.interaction)
    for t in tasks:
        name = getattr(cfg.loss, t, "")
        if name:
            loss_task = LOSSES.entry(name).meta.get("task")
            if loss_task not in (None, t):
                raise MtlbenchError(f"loss {name} is a {loss_task} loss and cannot train task {t}")
    return tasks


def resolve(cfg: RunConfig, tasks: dict[str, Task]) -> None:
    """Spell out the defaults the run uses, so that ``config.toml`` reproduces it whatever later
    versions default to."""
    cfg.train.select = resolved_select(cfg)
    for t, task in tasks.items():
        if hasattr(cfg.loss, t) and not getattr(cfg.loss, t):
            setattr(cfg.loss, t, task.default_loss)
    default = inspect.signature(MODELS.get(cfg.model.name)).parameters.get("interaction")
    if not cfg.model.interaction and default is not None and isinstance(default.default, str):
        cfg.model.interaction = default.default


def _check_select(cfg: RunConfig, tasks: dict[str, Task]) -> None:
    _, task, metric = resolved_select(cfg).split("/")
    known = ("loss",) + (tasks[task].metrics(cfg.eval).names if task in tasks else ())
    if metric not in known:
        raise MtlbenchError(f"train.select {resolved_select(cfg)!r}: {task} has no metric {metric!r}; "
                            f"choose from {', '.join(known)}")


def build_model(cfg: RunConfig, tasks: dict[str, Task], backbone: nn.Module) -> nn.Module:
    """The model of ``cfg`` on ``backbone``."""
    m = cfg.model
    options: dict[str, Any] = {"interaction": m.interaction} if m.interaction else {}
    factory = MODELS.get(m.name)
    try:
        inspect.signature(factory).bind(tasks, backbone, **options)
    except TypeError:
        raise MtlbenchError(f"model {m.name} takes no option {', '.join(options)}: drop --interaction") from None
    return factory(tasks, backbone, **options)


def build_losses(cfg: RunConfig, tasks: dict[str, Task], info: DatasetInfo) -> tuple[dict[str, nn.Module], nn.Module]:
    c = cfg.loss
    options = {"max_depth": info.max_depth, "alpha": c.depth_alpha, "beta": c.depth_beta,
               "gamma": c.depth_gamma, "pos_weight": c.edge_pos_weight, "ignore_index": info.ignore_index}
    losses = {t: call_with_accepted(LOSSES.get(getattr(c, t, "") or task.default_loss), **options)
              for t, task in tasks.items()}
    try:
        weighting = WEIGHTINGS.build(c.weighting, list(tasks), c.weights or None)
    except ValueError as exc:
        raise MtlbenchError(f"loss weighting {c.weighting}: {exc}") from None
    return losses, weighting


def build_run(cfg: RunConfig, progress: Callable[[int, int], None] | None = None) -> RunParts:
    """Everything a run needs. Raises :class:`MtlbenchError` on any bad input."""
    validate(cfg)
    check_names(cfg)
    d = cfg.data
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    backbone = _backbone(cfg)
    splits = call_with_accepted(
        DATASETS.get(d.name), root=d.root, size=d.size, frames=d.frames, protocol=d.split, fractions=d.fractions,
        split_seed=d.split_seed, val_frames=d.val_frames, classes=d.classes, raw_depth=d.raw_depth,
        scene_seed=d.scene_seed, holes=d.holes, max_depth=d.max_depth, edge_thickness=d.edge_thickness,
        progress=progress)
    check_nonempty([len(splits[s]) for s in ("train", "val", "test")])
    parts = _assemble(cfg, splits.info, backbone, device, splits)
    if d.clahe:
        for split in ("train", "val", "test"):
            arrays = splits[split].arrays
            arrays.image = apply_clahe(arrays.image, d.clahe_clip, device)
    return parts


def build_inference(cfg: RunConfig, info: DatasetInfo) -> RunParts:
    """The model, tasks and pipeline of ``cfg`` without its dataset (``splits`` is ``None``), for
    predicting on images from elsewhere."""
    validate(cfg)
    check_names(cfg)
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    return _assemble(cfg, info, _backbone(cfg), device, None)


def _backbone(cfg: RunConfig) -> nn.Module:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.width, m.pretrained, m.weights or None)
    backbone.check_size((cfg.data.size, cfg.data.size))
    return backbone


def _assemble(cfg: RunConfig, info: DatasetInfo, backbone: nn.Module, device: torch.device,
              splits: DatasetSplits | None) -> RunParts:
    d = cfg.data
    tasks = build_tasks(parse_tasks(cfg.tasks), info)
    _check_select(cfg, tasks)
    resolve(cfg, tasks)
    model = build_model(cfg, tasks, backbone)
    notes = list(getattr(model, "notes", []))
    losses, weighting = build_losses(cfg, tasks, info)
    pipeline = BatchPipeline(device, d.size, augment=d.augment, flip=d.flip, scale=tuple(d.scale),
                             color_jitter=d.color_jitter, normalize=d.normalize,
                             edge_thickness=d.edge_thickness, depth_edges=d.depth_edges,
                             channels_last=cfg.train.channels_last)
    model.to(device)
    weighting.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return RunParts(cfg, device, tasks, model, losses, weighting, splits, pipeline, notes, info)


__all__ = ["RunParts", "build_inference", "build_run", "check_names", "resolve_device"]
