"""Figures of single samples (the paper's 2×3 grid, or ground truth and prediction per task) and
attention maps, from a batch and its predictions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.data.pipeline import IMAGENET_MEAN, IMAGENET_STD
from mtlbench.engine.build import RunParts
from mtlbench.registry import TASKS
from mtlbench.report.figures import attention_figure, sample_figure, save_png, task_figure
from mtlbench.tasks import Task

# the reproduced paper's figure (Beneath the Surface, 2×3, a third row with normals) draws these
PAPER_FIGURE_TASKS = ("edge", "seg", "depth", "normals")


def _frame(x: Tensor) -> Tensor:
    """One frame as batches hold it (C×H×W or H×W) as tasks colour it (H×W for one channel)."""
    return x[0] if x.dim() == 3 and x.shape[0] == 1 else x


def _colouring_task(parts: RunParts, name: str) -> Task | None:
    """The run's task, or one built from the run's dataset facts to colour ground truth it does not
    train (``None`` where no such task is registered)."""
    if name in parts.tasks:
        return parts.tasks[name]
    return TASKS.build(name, parts.info) if name in TASKS else None


def sample_panels(parts: RunParts, batch: Mapping[str, Tensor], preds: Mapping[str, Tensor], i: int) -> dict[str, Any]:
    """The coloured panels of sample ``i``: ``rgb``, and ``gt_TASK`` and ``pred_TASK`` for every
    task the run trains and every task of the paper's figure (``None`` where the batch has no
    ground truth or the run no such task)."""
    image = batch["image"][i].float()
    if parts.pipeline.normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
        image = image * std + mean
    panels: dict[str, Any] = {"rgb": (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()}
    for key in dict.fromkeys([*PAPER_FIGURE_TASKS, *parts.tasks]):
        task = _colouring_task(parts, key)
        target = batch.get(task.target_key) if task is not None else None
        pred = preds.get(key) if key in parts.tasks else None
        gt_img, pred_img = (task.colorize_pair(None if target is None else _frame(target[i]).cpu(),
                                               None if pred is None else _frame(pred[i]).cpu())
                            if task is not None else (None, None))
        panels[f"gt_{key}"] = None if gt_img is None else gt_img.numpy()
        panels[f"pred_{key}"] = None if pred_img is None else pred_img.numpy()
    return panels


def write_sample_figures(parts: RunParts, batch: Mapping[str, Tensor], preds: Mapping[str, Tensor], folder: Path,
                         prefix: str, limit: int, names: Sequence[str] | None = None, suffix: str = "") -> list[Path]:
    """A figure for each of up to ``limit`` samples of ``batch`` as ``folder/NAME{suffix}.png``,
    NAME from ``names`` or ``{prefix}-{frame index}``; returns the files written. Runs of the
    paper's tasks get its 2×3 grid, others a row of ground truth and prediction per task."""
    written = []
    paper = set(parts.tasks) <= set(PAPER_FIGURE_TASKS)
    for i in range(min(limit, batch["image"].shape[0])):
        p = sample_panels(parts, batch, preds, i)
        name = names[i] if names else f"{prefix}-{int(batch['index'][i]):05d}"
        title = f"{parts.cfg.model.name}: {name}"
        if paper:
            fig = sample_figure(p["rgb"], p["pred_edge"], p["gt_seg"], p["gt_depth"], p["pred_seg"], p["pred_depth"],
                              title=title,
                              normals=(p["gt_edge"], p["gt_normals"], p["pred_normals"]) if "normals" in parts.tasks
                              else None)
        else:
            fig = task_figure(p["rgb"], [(t, p[f"gt_{t}"], p[f"pred_{t}"]) for t in parts.tasks], title=title)
        path = folder / f"{name}{suffix}.png"
        save_png(fig, path)
        written.append(path)
    return written


def attention_panels(rgb: np.ndarray, maps: Mapping[str, Tensor]) -> Any:
    """The attention of the image's centre query over the source features, per captured module
    (maps B×heads×queries×keys, as :func:`mtlbench.models.base.capture_attention` gives them)."""
    shown = []
    h, w = rgb.shape[:2]
    for name, att in maps.items():
        if att.dim() != 4:
            continue  # not query × key attention (e.g. per-pixel task masks)
        a = att[0].float().mean(0)  # heads averaged: queries × keys
        side_q = int(round(a.shape[0] ** 0.5))
        side_k = int(round(a.shape[1] ** 0.5))
        centre = (side_q // 2) * side_q + side_q // 2
        # "guidance.seg_to_depth" → "seg -> depth", "guidance.seg_to_depth_at8" → "seg -> depth @8"
        label = re.sub(r"_at(\d+)$", r" @\1", name.rsplit(".", 1)[-1].replace("_to_", " -> "))
        shown.append((label, a[centre].reshape(side_k, side_k).cpu().numpy()))
    if not shown:
        return None
    return attention_figure(rgb, shown, query=(h // 2, w // 2), title="attention of the centre query")


def write_attention_figure(parts: RunParts, batch: Mapping[str, Tensor], preds: Mapping[str, Tensor],
                           maps: Mapping[str, Tensor], path: Path) -> list[Path]:
    """The captured attention maps of the batch's first sample, if there are any; returns the files written."""
    figure = attention_panels(sample_panels(parts, batch, preds, 0)["rgb"], maps) if maps else None
    if figure is None:
        return []
    save_png(figure, path)
    return [path]
