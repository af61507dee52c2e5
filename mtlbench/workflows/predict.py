"""``mtlbench predict``: every task of a run on image files, with the sample figure of
*Beneath the Surface* per image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from mtlbench.data.datasets import apply_clahe
from mtlbench.data.images import read_image, read_label_png
from mtlbench.data.nyuv2 import resize_frames
from mtlbench.engine.runs import ensure_folder, inference_parts
from mtlbench.errors import MtlbenchError
from mtlbench.models.base import capture_attention
from mtlbench.report.samples import write_attention_figure, write_sample_figures


def predict_images(run_dir: Path, images: Sequence[Path], out_dir: Path, depth_gt: Sequence[Path] = (),
                   seg_gt: Sequence[Path] = (), depth_scale: float = 5000.0, checkpoint: str = "best",
                   device: str | None = None) -> list[Path]:
    """Predict every task of the run on image files and write, per image NAME, into ``out_dir``,
    each task's prediction as the task saves it (``NAME_depth.npy`` in metres, ``NAME_seg.png``
    class ids, ``NAME_edge.png`` probability × 255, ``NAME_TASK.npy`` for a task that says no
    more), ``NAME_grid.png`` (the sample figure) and, for guided attention, ``NAME_attention.png``.

    Optional ground truth, in the order of ``images``: depth PNGs (value / ``depth_scale`` metres,
    0 invalid) and label PNGs (class ids, 255 unlabelled); they fill the figure's GT panels.
    """
    images = [Path(p) for p in images]
    if not images:
        raise MtlbenchError("no image given: pass one or more PNG/JPEG files")
    for name, given in (("depth_gt", depth_gt), ("seg_gt", seg_gt)):
        if given and len(given) != len(images):
            raise MtlbenchError(f"{name} lists {len(given)} for {len(images)} images: give one file per image, "
                                f"in the same order")
    if depth_scale <= 0:
        raise MtlbenchError(f"depth_scale must be positive, got {depth_scale}")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise MtlbenchError("two images share a file name: outputs would overwrite each other; rename one")
    rgb = [read_image(p) for p in images]  # every input is checked before anything is written
    depth: list[Tensor | None] = [read_label_png(p).float() / depth_scale for p in depth_gt] or [None] * len(images)
    seg: list[Tensor | None] = [read_label_png(p) for p in seg_gt] or [None] * len(images)
    for i, img in enumerate(rgb):
        for what, gt in (("depth", depth[i]), ("labels", seg[i])):
            if gt is not None and tuple(gt.shape) != tuple(img.shape[:2]):
                raise MtlbenchError(f"{what} of {images[i]} is {tuple(gt.shape)} but the image is "
                                    f"{tuple(img.shape[:2])}: they must be the same frame")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MtlbenchError(f"out_dir {out_dir} is a file: pass a folder")
    parts = inference_parts(run_dir, device, checkpoint)
    cfg = parts.cfg
    size = cfg.data.size
    ensure_folder(out_dir, "out_dir")
    written: list[Path] = []
    with capture_attention(parts.model) as maps:
        for i, path in enumerate(images):
            h, w = rgb[i].shape[:2]
            depth_gt_i, seg_gt_i = depth[i], seg[i]
            d = depth_gt_i if depth_gt_i is not None else torch.zeros(h, w)
            s = seg_gt_i if seg_gt_i is not None else torch.full((h, w), 255, dtype=torch.int64)
            s = torch.where((s >= 0) & (s < 65535), s, torch.full_like(s, 255))
            img, d, s = resize_frames(rgb[i][None], d[None], s[None], size)
            if cfg.data.clahe:
                img = apply_clahe(img, cfg.data.clahe_clip, parts.device)
            raw = {"image": img, "index": torch.tensor([i])}
            # the ground truth given, where the run's dataset had such targets (figures only)
            truth = {"depth": d if depth_gt_i is not None else None, "seg": s if seg_gt_i is not None else None}
            raw |= {k: v for k, v in truth.items() if v is not None and k in parts.info.targets}
            batch = parts.pipeline(raw, train=False)
            with torch.no_grad():
                out = parts.model(batch["image"])
            preds = {t: task.predict(out[t]) for t, task in parts.tasks.items()}
            stem = path.stem
            written += [task.save(preds[t][0], out_dir / stem) for t, task in parts.tasks.items()]
            written += write_sample_figures(parts, batch, preds, out_dir, "", 1, names=[stem], suffix="_grid")
            written += write_attention_figure(parts, batch, preds, maps, out_dir / f"{stem}_attention.png")
    return written
