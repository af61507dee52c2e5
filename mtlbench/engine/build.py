"""From a :class:`RunConfig` to the objects a run needs, every check done before anything is written."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtlbench.config import ModelConfig, RunConfig, criterion, preset_dataset_options, resolved_select, validate
from mtlbench.data.datasets import DatasetSplits, apply_clahe, check_nonempty
from mtlbench.data.pipeline import BatchPipeline
from mtlbench.engine.distributed import Dist, sync_batchnorm
from mtlbench.errors import MtlbenchError
from mtlbench.metrics.records import lookup
from mtlbench.models.backbones import Backbone, build_backbone, check_backbone
from mtlbench.models.base import MultiTaskModel
from mtlbench.options import resolve_options
from mtlbench.registry import DATASETS, INTERACTIONS, LOSSES, MODELS, TASKS, WEIGHTINGS
from mtlbench.tasks import DatasetInfo, Task, build_tasks, parse_tasks
from mtlbench.weighting import GradientWeighting, Weighting


def resolve_device(name: str, dist: Dist | None = None) -> torch.device:
    """The device ``train.device`` names; with several processes, the GPU of this one's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MtlbenchError(f"train.device {name} asked for, but torch sees no CUDA GPU: use cpu or auto")
    if name == "cuda" and dist is not None and dist.active:
        return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``train.precision`` on ``device``: auto is bf16 where the GPU supports it, else fp32."""
    if name == "auto":  # Ampere and later compute in bf16; older GPUs would only emulate it
        return "bf16" if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise MtlbenchError(f"train.precision fp16 needs a GPU (its gradient scaler is CUDA's), and this run is on "
                            f"{device}: use bf16 or fp32")
    return name


def compile_blocker(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or ``None``."""
    import shutil

    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "its GPU code generator, triton, is not installed"
    cxx = os.environ.get("CXX", "")
    if not any(shutil.which(c) for c in (cxx, "c++", "g++", "clang++") if c):
        return "it needs a C++ compiler for CPU code and none was found (set CXX or install g++)"
    return None


# the dataset moves to the GPU when it takes at most this share of the free memory
GPU_DATA_SHARE = 0.25


@dataclass
class RunParts:
    cfg: RunConfig
    device: torch.device
    tasks: dict[str, Task]
    model: MultiTaskModel
    losses: dict[str, nn.Module]
    weighting: Weighting
    splits: DatasetSplits | None  # None when built for inference only
    pipeline: BatchPipeline
    notes: list[str]  # lines for the run header
    info: DatasetInfo  # the dataset facts tasks were built from (also without ``splits``)
    precision: str = "fp32"  # resolved: fp32, bf16 or fp16
    dist: Dist = Dist()
    compile: bool = False  # train.compile resolved: whether the training step is compiled

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for forward passes, as ``precision`` says."""
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def dataset_splits(self) -> DatasetSplits:
        """``splits``, for code that trains or evaluates: only :func:`build_inference` leaves it ``None``."""
        if self.splits is None:
            raise RuntimeError("these run parts were built for inference: they have no dataset splits")
        return self.splits


def check_names(cfg: RunConfig) -> tuple[str, ...]:
    """Names of tasks, model, dataset, losses and weighting exist and fit together; returns the tasks."""
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
        raise MtlbenchError(f"model {cfg.model.name} needs train.batch_size {min_batch} or more (batch statistics "
                            f"in training), got {cfg.train.batch_size}")
    if entry.meta.get("single_task") and len(tasks) != 1:
        raise MtlbenchError(f"model {cfg.model.name} is a single-task baseline: pass one of "
                            f"{', '.join(served or ())} (got {', '.join(tasks)})")
    DATASETS.entry(cfg.data.name)
    WEIGHTINGS.entry(cfg.weighting.name)
    for t, name in cfg.loss.names.items():
        loss_task = LOSSES.entry(name).meta.get("task")
        if loss_task not in (None, t):
            raise MtlbenchError(f"loss {name} is a {loss_task} loss and cannot train task {t}")
    return tasks


def resolve(cfg: RunConfig, new: bool = True) -> None:
    """Check ``cfg`` whole and spell out every default it uses, in place, so that ``config.toml``
    reproduces the run whatever later versions default to: each options table is checked against
    what its factory declares (an unknown key is an error naming the dotted key, with the close
    matches), each task's loss is named. Idempotent. ``new=False`` (a run that exists: resumed,
    evaluated) skips the model's ``validate`` hook, whose rules may be newer than the run.
    Errors name the dotted key (``data.options.frames``), as a config file or ``--set`` spells it."""
    validate(cfg)
    tasks = check_names(cfg)
    d, m, w = cfg.data, cfg.model, cfg.weighting
    d.options = resolve_options(f"dataset {d.name}", DATASETS.entry(d.name).options,
                                {**preset_dataset_options(cfg), **d.options}, "data.options")
    check_backbone(m.backbone, d.size)  # by name and stride, nothing built
    model_entry = MODELS.entry(m.name)
    m.options = resolve_options(f"model {m.name}", model_entry.options, m.options, "model.options")
    m.interaction = resolve_interaction(m.name, model_entry.meta, m.options, m.interaction, m.width)
    if new and (check := model_entry.meta.get("validate")) is not None:  # e.g. guidance edges of trained tasks
        check(tasks, m.options)
    w.options = resolve_options(f"weighting {w.name}", WEIGHTINGS.entry(w.name).options, w.options,
                                "weighting.options")
    task_options = {t: resolve_options(f"task {t}", TASKS.entry(t).options, cfg.task_options.get(t, {}),
                                       f"task_options.{t}")
                    for t in tasks}
    cfg.task_options = {t: o for t, o in task_options.items() if o}  # no empty table per task without options
    for t in tasks:
        name = cfg.loss.names.get(t) or TASKS.build(t, DatasetInfo(), **task_options[t]).default_loss
        cfg.loss.names[t] = name
        cfg.loss.options[t] = resolve_options(f"loss {name}", LOSSES.entry(name).options,
                                              cfg.loss.options.get(t, {}), f"loss.options.{t}")
    cfg.loss.names = {t: cfg.loss.names[t] for t in tasks}
    cfg.loss.options = {t: cfg.loss.options[t] for t in tasks}
    build_weighting(cfg, tasks)  # cheap: its own value checks (e.g. weights of untrained tasks) come now
    cfg.train.select = resolved_select(cfg)
    c = criterion(cfg)
    if c.metric != "loss":  # a misspelt metric fails here, before any data is read
        try:
            lookup(c.task, c.metric)
        except MtlbenchError as exc:
            raise MtlbenchError(f"train.select {str(c)!r}: {exc}") from None


def chosen_interaction(model: ModelConfig) -> str | None:
    """The interaction a model configuration uses, resolved or not: its option, else the model's
    declared default (None for a model that takes none, or an unknown model)."""
    if "interaction" in model.options:
        return str(model.options["interaction"])
    if model.name not in MODELS:
        return None
    declared = MODELS.entry(model.name).options.get("interaction")
    return str(declared.default) if declared is not None else None


def resolve_interaction(model: str, meta: Mapping[str, Any], options: Mapping[str, Any],
                        given: Mapping[str, Any], width: int) -> dict[str, Any]:
    """``[model.interaction]`` checked against the options of the interaction ``options`` names,
    defaults spelled out; empty for a model without interaction points (where it must be empty).
    One module is built at ``width``, so that a constraint between options (dim divisible by
    heads) stops here, before a sweep starts, and not in its tenth run."""
    if not meta.get("interaction_points"):
        if given:
            with_points = [e.name for e in MODELS.entries() if e.meta.get("interaction_points")]
            raise MtlbenchError(f"model {model} has no interaction points, so [model.interaction] "
                                f"({', '.join(given)}) has nothing to configure: remove it (models with "
                                f"interactions: {', '.join(with_points)})")
        return {}
    if "interaction" not in options:
        raise MtlbenchError(f"model {model} registers interaction_points but declares no option 'interaction': "
                            f"its plugin must declare one naming the interaction it uses")
    name = options["interaction"]
    resolved = resolve_options(f"interaction {name}", INTERACTIONS.entry(name).options, given, "model.interaction")
    try:
        INTERACTIONS.build(name, width, **resolved)
    except ValueError as exc:
        raise MtlbenchError(f"model.interaction (interaction {name}): {exc}") from None
    return resolved


def _check_select(cfg: RunConfig, tasks: dict[str, Task]) -> None:
    c = criterion(cfg)
    known = ("loss",) + (tasks[c.task].metrics(cfg.eval).names if c.task in tasks else ())
    if c.metric not in known:
        raise MtlbenchError(f"train.select {str(c)!r}: {c.task} has no metric {c.metric!r}; "
                            f"choose from {', '.join(known)}")


def build_model(cfg: RunConfig, tasks: dict[str, Task], backbone: Backbone) -> MultiTaskModel:
    """The model of ``cfg`` on ``backbone`` (``cfg`` resolved)."""
    m = cfg.model
    # resolve() leaves [model.interaction] empty for a model without interaction points
    extra = {"interaction_options": dict(m.interaction)} if m.interaction else {}
    model = MODELS.build(m.name, tasks, backbone, **m.options, **extra)
    if not isinstance(model, MultiTaskModel):
        raise MtlbenchError(f"model {cfg.model.name} built a {type(model).__name__}, not a MultiTaskModel "
                            f"(mtlbench.models.base): its factory must return one")
    return model


def build_losses(cfg: RunConfig, tasks: dict[str, Task], info: DatasetInfo) -> dict[str, nn.Module]:
    """Each task's loss, as ``cfg.loss`` names it (``cfg`` resolved)."""
    return {t: LOSSES.build(cfg.loss.names[t], info, **cfg.loss.options[t]) for t in tasks}


def build_weighting(cfg: RunConfig, tasks: Sequence[str]) -> Weighting:
    """The weighting of ``cfg`` (resolved) for the tasks named."""
    w = cfg.weighting
    try:
        weighting = WEIGHTINGS.build(w.name, list(tasks), **w.options)
    except ValueError as exc:
        raise MtlbenchError(f"weighting {w.name}: {exc}") from None
    if not isinstance(weighting, Weighting):
        raise MtlbenchError(f"weighting {w.name} built a {type(weighting).__name__}, not a Weighting "
                            f"(mtlbench.weighting.base): its factory must return one")
    return weighting


def build_run(cfg: RunConfig, progress: Callable[[int, int], None] | None = None,
              dist: Dist | None = None, training: bool = True, new: bool = True) -> RunParts:
    """Everything a run needs. Raises :class:`MtlbenchError` on any bad input (``new``: see
    :func:`resolve`). ``training=False`` (evaluating a run) skips what only training needs (the
    compiler, fp16's GPU).

    With several processes (``dist``), rank 0 builds the dataset first (it fills the caches the
    others then read), and each process takes its own GPU.
    """
    resolve(cfg, new=new)
    dist = dist or Dist()
    d = cfg.data
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device, dist)
    backbone = _backbone(cfg)
    with dist.main_first():
        splits = DATASETS.build(d.name, d.root, d.size, progress, **d.options)
    check_nonempty([len(splits[s]) for s in ("train", "val", "test")])
    parts = _assemble(cfg, splits.info, backbone, device, splits, dist, training)
    if parts.pipeline.depth_zoom and d.augment and d.scale[0] < 1:
        parts.notes.append(f"depth divided by each training crop's zoom (data.depth_zoom {d.depth_zoom})")
    scoring = splits.test.scoring
    if scoring is not None:
        h, w = scoring.size
        parts.notes.append(f"test scored at {h}×{w}, {scoring.note}" if cfg.eval.resolution == "auto"
                           else f"test scored at the input resolution (eval.resolution input), not at the protocol's "
                                f"{h}×{w}")
    for split in ("train", "val", "test"):
        if d.clahe:
            arrays = splits[split].arrays
            arrays.image = apply_clahe(arrays.image, d.clahe_clip, device)
    if device.type == "cuda":
        size = sum(splits[s].arrays.nbytes() for s in ("train", "val", "test"))
        if size <= GPU_DATA_SHARE * torch.cuda.mem_get_info(device)[0]:  # else batches are copied per step
            for split in ("train", "val", "test"):
                splits[split].arrays = splits[split].arrays.to(device)
            parts.notes.append(f"dataset held on {device} ({size / 2**20:.0f} MiB)")
    return parts


def depth_zoom(cfg: RunConfig, splits: DatasetSplits | None) -> bool:
    """Whether training crops divide depth by their zoom: as ``data.depth_zoom`` says, or with
    ``auto`` as the dataset's protocol does (NYUD-MT's code does, *Beneath the Surface*'s does
    not)."""
    if cfg.data.depth_zoom == "auto":
        return bool(splits is not None and splits.depth_zoom)
    return cfg.data.depth_zoom == "on"


def build_inference(cfg: RunConfig, info: DatasetInfo) -> RunParts:
    """The model, tasks and pipeline of ``cfg`` without its dataset (``splits`` is ``None``), for
    predicting on images from elsewhere (a run that exists: its rules are those it was made under)."""
    resolve(cfg, new=False)
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    return _assemble(cfg, info, _backbone(cfg), device, None, Dist(), training=False)


def _backbone(cfg: RunConfig) -> Backbone:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.width, m.pretrained, m.weights or None)
    backbone.check_size((cfg.data.size, cfg.data.size))
    return backbone


def _assemble(cfg: RunConfig, info: DatasetInfo, backbone: Backbone, device: torch.device,
              splits: DatasetSplits | None, dist: Dist, training: bool = True) -> RunParts:
    d = cfg.data
    fp16_off_gpu = not training and cfg.train.precision == "fp16" and device.type != "cuda"
    precision = "fp32" if fp16_off_gpu else resolve_precision(cfg.train.precision, device)
    notes: list[str] = []
    if training and cfg.train.compile != "off" and (blocker := compile_blocker(device)):
        if cfg.train.compile == "on":
            raise MtlbenchError(f"train.compile on: torch.compile cannot run on {device}: {blocker}; set it to auto "
                                f"to train eager where it cannot compile")
        notes.append(f"train.compile auto: training eager, torch.compile cannot run on {device}: {blocker}")
    compile_step = training and cfg.train.compile != "off" and not notes
    tasks = build_tasks(parse_tasks(cfg.tasks), info, cfg.task_options)
    if splits is not None:
        for name, task in tasks.items():
            if (lacks := task.missing(info)) is not None:
                raise MtlbenchError(f"task {name} cannot train on dataset {d.name}: {lacks}")
    _check_select(cfg, tasks)
    model = build_model(cfg, tasks, backbone)
    notes = list(model.notes) + notes
    losses = build_losses(cfg, tasks, info)
    weighting = build_weighting(cfg, list(tasks))
    if isinstance(weighting, GradientWeighting) and not any(p.requires_grad for p in model.shared_parameters()):
        raise MtlbenchError(f"weighting {cfg.weighting.name} combines the tasks' gradients of the shared parameters, "
                            f"and model {cfg.model.name} shares none on {', '.join(tasks)}: use a loss-level "
                            f"weighting (fixed, uncertainty)")
    pipeline = BatchPipeline(device, d.size, augment=d.augment, flip=d.flip, scale=(d.scale[0], d.scale[1]),
                             color_jitter=d.color_jitter, normalize=d.normalize, targets=info.targets,
                             tasks=list(tasks.values()), depth_zoom=depth_zoom(cfg, splits),
                             channels_last=cfg.train.channels_last)
    if cfg.train.sync_bn and dist.active:
        sync_batchnorm(model, dist, device)  # in place: the model itself is no BatchNorm
    model.to(device)
    weighting.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return RunParts(cfg, device, tasks, model, losses, weighting, splits, pipeline, notes, info, precision, dist,
                    compile_step)


__all__ = ["RunParts", "build_inference", "build_run", "check_names", "resolve", "resolve_device", "resolve_precision"]
