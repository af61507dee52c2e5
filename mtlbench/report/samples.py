"""Figures of single samples: the seed's 2×3 grid and attention maps, from a batch and its predictions."""

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
from mtlbench.report.figures import attention_figure, save_png, seed_figure
from mtlbench.tasks import Task


def _gt_or_none(batch: Mapping[str, Tensor], key: str, i: int) -> Tensor | None:
    value = batch.get(key)
    if value is None:
        return None
    x = value[i]
    return x[0] if x.dim() == 3 else x


def _depth_range(gt: Tensor | None, pred: Tensor | None) -> dict[str, float]:
    """One colour range for a sample's depth panels: the ground truth's valid range, else the
    prediction's (indoor scenes span a few metres of the 10 m scale)."""
    for d in (gt, pred):
        if d is not None and bool((d > 0).any()):
            v = d[d > 0].float()
            return {"near": float(v.min()), "far": float(v.max())}
    return {}


def _colouring_task(parts: RunParts, name: str) -> Task:
    """The run's task, or one built from the run's dataset facts to colour ground truth it does not train."""
    return parts.tasks.get(name) or TASKS.build(name, parts.info)


def sample_panels(parts: RunParts, batch: Mapping[str, Tensor], preds: Mapping[str, Tensor], i: int) -> dict[str, Any]:
    """The coloured panels of sample ``i`` for :func:`seed_figure` (``None`` where the batch has no
    ground truth or the run no such task)."""
    image = batch["image"][i].float()
    if parts.pipeline.normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
        image = image * std + mean
    panels: dict[str, Any] = {"rgb": (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()}
    depth_range = _depth_range(_gt_or_none(batch, "depth", i),
                               preds["depth"][i].squeeze(0) if "depth" in preds else None)
    for key in ("edge", "seg", "depth", "normals"):
        task = parts.tasks.get(key)
        options = depth_range if key == "depth" else {}
        pred = preds.get(key)
        squeeze = key != "normals"  # 3×H×W stays whole
        panels[f"pred_{key}"] = (task.colorize((pred[i].squeeze(0) if squeeze else pred[i]).cpu(), **options).numpy()
                                 if task is not None and pred is not None else None)
        gt = batch[key][i] if key == "normals" and key in batch else _gt_or_none(batch, key, i)
        panels[f"gt_{key}"] = (_colouring_task(parts, key).colorize(gt.cpu(), **options).numpy()
                               if gt is not None else None)
    return panels


def write_sample_figures(parts: RunParts, batch: Mapping[str, Tensor], preds: Mapping[str, Tensor], folder: Path,
                         prefix: str, limit: int, names: Sequence[str] | None = None, suffix: str = "") -> list[Path]:
    """The seed's 2×3 grid for up to ``limit`` samples of ``batch`` as ``folder/NAME{suffix}.png``,
    NAME from ``names`` or ``{prefix}-{frame index}``; returns the files written."""
    written = []
    for i in range(min(limit, batch["image"].shape[0])):
        p = sample_panels(parts, batch, preds, i)
        name = names[i] if names else f"{prefix}-{int(batch['index'][i]):05d}"
        fig = seed_figure(p["rgb"], p["pred_edge"], p["gt_seg"], p["gt_depth"], p["pred_seg"], p["pred_depth"],
                          title=f"{parts.cfg.model.name}: {name}",
                          normals=(p["gt_edge"], p["gt_normals"], p["pred_normals"]) if "normals" in parts.tasks
                          else None)
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
