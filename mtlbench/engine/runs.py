"""Working with a finished run directory: re-evaluate a checkpoint, predict on any image, draw figures."""

from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from mtlbench.errors import MtlbenchError

SPLITS = ("train", "val", "test")


def ensure_folder(path: Path, what: str) -> None:
    """Create ``path`` (and parents) or fail with one line naming ``what``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MtlbenchError(f"{what} {path}: a file is in the way; choose another folder") from None
    except OSError as exc:
        raise MtlbenchError(f"{what} {path} cannot be created ({exc.strerror or exc}): choose another folder") from None


def load_run_config(run_dir: Path, device: str | None = None, eval_options: dict[str, Any] | None = None):
    """The run's config, ready to rebuild it for inference: no pretrained download (the checkpoint
    holds the weights), an optional device and ``[eval]`` overrides."""
    from mtlbench import config as C

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise MtlbenchError(f"{run_dir} is not an mtlbench run directory (no config.toml)")
    cfg = C.load(run_dir / "config.toml")
    cfg.model.pretrained = False
    cfg.model.weights = ""
    if device:
        cfg.train.device = device
    if eval_options:
        cfg = C.from_dict({"eval": eval_options}, cfg, where="option")
    C.validate(cfg)
    return cfg


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which not in ("best", "last"):
        raise MtlbenchError(f"--checkpoint {which!r}: choose best or last")
    path = Path(run_dir) / f"{which}.pt"
    if not path.is_file():
        raise MtlbenchError(f"{path} not found: the run saved no {which} checkpoint yet (train it first)")
    return path


def load_weights(parts, path: Path, ckpt: dict[str, Any] | None = None) -> int:
    """Checkpoint weights (``ckpt``, read from ``path`` when not given) into ``parts.model``;
    returns the checkpoint's epoch."""
    from mtlbench.engine.trainer import load_checkpoint

    ckpt = load_checkpoint(path, parts.device) if ckpt is None else ckpt
    if list(ckpt.get("tasks", [])) != list(parts.tasks):
        raise MtlbenchError(f"{path} holds tasks {ckpt.get('tasks')} but the run's config has {list(parts.tasks)}")
    try:
        parts.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MtlbenchError(f"{path} does not fit the model of config.toml ({first})") from None
    return int(ckpt.get("epoch", 0))


def evaluate_run(run_dir: Path, split: str = "test", checkpoint: str = "best", device: str | None = None,
                 eval_options: dict[str, Any] | None = None, figures: int = 0,
                 on_batch: Callable[..., None] | None = None, progress: Callable[[int, int], None] | None = None,
                 ) -> dict[str, Any]:
    """Evaluate a checkpoint of ``run_dir`` on ``split``, store it in ``metrics.json`` and return
    the whole file. ``figures`` > 0 also draws that many samples into ``run_dir/figures``."""
    from mtlbench.engine.build import build_run
    from mtlbench.engine.trainer import eval_record, evaluate
    from mtlbench.fileio import atomic_write

    if split not in SPLITS:
        raise MtlbenchError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
    if figures < 0:
        raise MtlbenchError(f"--figures must be 0 or more, got {figures}")
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, device, eval_options)
    ckpt_path = checkpoint_path(run_dir, checkpoint)
    if figures:
        ensure_folder(run_dir / "figures", "figures folder")
    parts = build_run(cfg, progress=progress)
    epoch = load_weights(parts, ckpt_path)
    dataset = parts.splits[split]
    if len(dataset) == 0:
        raise MtlbenchError(f"the {split} split of this run is empty")
    drawn: list[Path] = []

    def each(batch: dict[str, Tensor], out: dict[str, Any], preds: dict[str, Tensor]) -> None:
        if figures > len(drawn):
            if not drawn:
                name = f"{split}-{int(batch['index'][0]):05d}_attention.png"
                write_attention_figure(parts, batch, preds, run_dir / "figures" / name)
            drawn.extend(write_sample_figures(parts, batch, preds, run_dir / "figures", split, figures - len(drawn)))
        if on_batch is not None:
            on_batch()

    autocast = torch.autocast(parts.device.type, dtype=torch.bfloat16) if cfg.train.bf16 else None
    with recording_attention(parts.model) if figures else nullcontext():
        result = evaluate(parts, dataset, autocast, on_batch=each)
    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}  # a damaged file is rewritten whole
    metrics.update({"model": cfg.model.name, "backbone": cfg.model.backbone, "tasks": list(parts.tasks),
                    "dataset": cfg.data.name})
    metrics.setdefault("sizes", {s: len(parts.splits[s]) for s in SPLITS})
    metrics[split] = result
    metrics.setdefault("eval", {})[split] = eval_record(cfg, checkpoint, epoch, parts.device)
    atomic_write(path, lambda f: f.write(json.dumps(metrics, indent=2) + "\n"), mode="w")
    if figures and (run_dir / "log.jsonl").is_file():
        from mtlbench.engine.trainer import Trainer
        from mtlbench.report.figures import save_png, training_curves

        records = Trainer.read_log(run_dir / "log.jsonl")
        if records:
            save_png(training_curves(records, title=f"{cfg.model.name} training"), run_dir / "figures" / "curves.png")
    return metrics


def _gt_or_none(batch: dict[str, Tensor], key: str, i: int) -> Tensor | None:
    value = batch.get(key)
    if value is None:
        return None
    x = value[i]
    return x[0] if x.dim() == 3 else x


def sample_panels(parts, batch: dict[str, Tensor], preds: dict[str, Tensor], i: int) -> dict[str, Any]:
    """The coloured panels of sample ``i`` for :func:`seed_figure` (``None`` where the batch has no
    ground truth or the run no such task)."""
    from mtlbench.data.pipeline import IMAGENET_MEAN, IMAGENET_STD

    image = batch["image"][i].float()
    if parts.pipeline.normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
        image = image * std + mean
    panels: dict[str, Any] = {"rgb": (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()}
    depth_range = _depth_range(_gt_or_none(batch, "depth", i),
                               preds["depth"][i].squeeze(0) if "depth" in preds else None)
    for key in ("edge", "seg", "depth"):
        task = parts.tasks.get(key)
        options = depth_range if key == "depth" else {}
        pred = preds.get(key)
        panels[f"pred_{key}"] = (task.colorize(pred[i].squeeze(0).cpu(), **options).numpy()
                                 if task is not None and pred is not None else None)
        gt = _gt_or_none(batch, key, i)
        if key != "edge":
            colour = task or _default_task(parts, key)
            panels[f"gt_{key}"] = colour.colorize(gt.cpu(), **options).numpy() if gt is not None else None
    return panels


def _depth_range(gt: Tensor | None, pred: Tensor | None) -> dict[str, float]:
    """One colour range for a sample's depth panels: the ground truth's valid range, else the
    prediction's (indoor scenes span a few metres of the 10 m scale)."""
    for d in (gt, pred):
        if d is not None and bool((d > 0).any()):
            v = d[d > 0].float()
            return {"near": float(v.min()), "far": float(v.max())}
    return {}


def _default_task(parts, name: str):
    from mtlbench.registry import TASKS

    return TASKS.build(name, parts.info)


def write_sample_figures(parts, batch: dict[str, Tensor], preds: dict[str, Tensor], folder: Path, prefix: str,
                         limit: int, names: Sequence[str] | None = None, suffix: str = "") -> list[Path]:
    """The seed's 2×3 grid for up to ``limit`` samples of ``batch`` as ``folder/NAME{suffix}.png``,
    NAME from ``names`` or ``{prefix}-{frame index}``; returns the files written."""
    from mtlbench.report.figures import save_png, seed_figure

    written = []
    for i in range(min(limit, batch["image"].shape[0])):
        p = sample_panels(parts, batch, preds, i)
        name = names[i] if names else f"{prefix}-{int(batch['index'][i]):05d}"
        fig = seed_figure(p["rgb"], p["pred_edge"], p["gt_seg"], p["gt_depth"], p["pred_seg"], p["pred_depth"],
                          title=f"{parts.cfg.model.name}: {name}")
        path = folder / f"{name}{suffix}.png"
        save_png(fig, path)
        written.append(path)
    return written


def read_image(path: Path) -> Tensor:
    """An RGB image file as H×W×3 uint8."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        return decode_image(data, mode=ImageReadMode.RGB).permute(1, 2, 0).contiguous()
    except FileNotFoundError:
        raise MtlbenchError(f"image {path} not found") from None
    except (RuntimeError, ValueError, OSError):
        raise MtlbenchError(f"{path} is not a readable PNG or JPEG image: pass an RGB image file") from None


def read_label_png(path: Path) -> Tensor:
    """A single-channel PNG (labels or depth) as H×W int64, values kept as stored (8 or 16 bit)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B"):
                raise MtlbenchError(f"{path} has {im.mode} pixels: expected one channel (8- or 16-bit PNG)")
            return torch.from_numpy(np.array(im).astype(np.int64))
    except FileNotFoundError:
        raise MtlbenchError(f"file {path} not found") from None
    except OSError as exc:
        raise MtlbenchError(f"{path} is not a readable PNG ({exc})") from None


def _inference_parts(run_dir: Path, device: str | None, checkpoint: str):
    from mtlbench.engine.build import build_inference, build_run
    from mtlbench.engine.trainer import load_checkpoint
    from mtlbench.tasks import DatasetInfo

    cfg = load_run_config(run_dir, device)
    path = checkpoint_path(run_dir, checkpoint)
    ckpt = load_checkpoint(path)
    saved = ckpt.get("info")
    if saved:  # the checkpoint knows its dataset: no need to build it
        info = DatasetInfo(saved["num_classes"], saved["max_depth"], tuple(saved["class_names"]),
                           saved["ignore_index"])
        parts = build_inference(cfg, info)
    else:
        parts = build_run(cfg)
    load_weights(parts, path, ckpt)
    parts.model.eval()
    return parts


def predict_images(run_dir: Path, images: Sequence[Path], out_dir: Path, depth_gt: Sequence[Path] = (),
                   seg_gt: Sequence[Path] = (), depth_scale: float = 5000.0, checkpoint: str = "best",
                   device: str | None = None) -> list[Path]:
    """Predict every task of the run on image files and write, per image NAME, into ``out_dir``:
    ``NAME_depth.npy`` (metres), ``NAME_seg.png`` (class ids), ``NAME_edge.png`` (probability × 255),
    ``NAME_grid.png`` (the seed's 2×3 figure) and, for guided attention, ``NAME_attention.png``.

    Optional ground truth, in the order of ``images``: depth PNGs (value / ``depth_scale`` metres,
    0 invalid) and label PNGs (class ids, 255 unlabelled); they fill the figure's GT panels.
    """
    import numpy as np

    from mtlbench.data.datasets import apply_clahe
    from mtlbench.data.nyuv2 import resize_frames
    from mtlbench.fileio import atomic_write

    images = [Path(p) for p in images]
    if not images:
        raise MtlbenchError("no image given: pass one or more PNG/JPEG files")
    for name, given in (("--depth", depth_gt), ("--labels", seg_gt)):
        if given and len(given) != len(images):
            raise MtlbenchError(f"{name} given {len(given)} times for {len(images)} images: give one per image, "
                                f"in the same order")
    if depth_scale <= 0:
        raise MtlbenchError(f"--depth-scale must be positive, got {depth_scale}")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise MtlbenchError("two images share a file name: outputs would overwrite each other; rename one")
    rgb = [read_image(p) for p in images]  # every input is checked before anything is written
    depth = [read_label_png(p).float() / depth_scale for p in depth_gt] or [None] * len(images)
    seg = [read_label_png(p) for p in seg_gt] or [None] * len(images)
    for i, img in enumerate(rgb):
        for what, gt in (("depth", depth[i]), ("labels", seg[i])):
            if gt is not None and tuple(gt.shape) != tuple(img.shape[:2]):
                raise MtlbenchError(f"{what} of {images[i]} is {tuple(gt.shape)} but the image is "
                                    f"{tuple(img.shape[:2])}: they must be the same frame")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MtlbenchError(f"--out {out_dir} is a file: pass a folder")
    parts = _inference_parts(run_dir, device, checkpoint)
    cfg = parts.cfg
    size = cfg.data.size
    ensure_folder(out_dir, "--out")
    written: list[Path] = []
    with recording_attention(parts.model):
        for i, path in enumerate(images):
            h, w = rgb[i].shape[:2]
            d = depth[i] if depth[i] is not None else torch.zeros(h, w)
            s = seg[i] if seg[i] is not None else torch.full((h, w), 255, dtype=torch.int64)
            s = torch.where((s >= 0) & (s < 65535), s, torch.full_like(s, 255))
            img, d, s = resize_frames(rgb[i][None], d[None], s[None], size)
            if cfg.data.clahe:
                img = apply_clahe(img, cfg.data.clahe_clip, parts.device)
            raw = {"image": img, "depth": d, "seg": s, "index": torch.tensor([i])}
            batch = parts.pipeline(raw, train=False)
            if seg[i] is None:
                batch.pop("seg"), batch.pop("edge")
            if depth[i] is None:
                batch.pop("depth")
            with torch.no_grad():
                out = parts.model(batch["image"])
            preds = {t: task.predict(out[t]) for t, task in parts.tasks.items()}
            stem = path.stem
            if "depth" in preds:
                target = out_dir / f"{stem}_depth.npy"
                depth_m = preds["depth"][0, 0].cpu().numpy().astype(np.float32)
                atomic_write(target, lambda f, a=depth_m: np.save(f, a))
                written.append(target)
            if "seg" in preds:
                written.append(_save_gray(preds["seg"][0].cpu(), out_dir / f"{stem}_seg.png"))
            if "edge" in preds:
                written.append(_save_gray((preds["edge"][0, 0].cpu() * 255).round(), out_dir / f"{stem}_edge.png"))
            written += write_sample_figures(parts, batch, preds, out_dir, "", 1, names=[stem], suffix="_grid")
            written += write_attention_figure(parts, batch, preds, out_dir / f"{stem}_attention.png")
    return written


@contextmanager
def recording_attention(model: torch.nn.Module) -> Iterator[None]:
    """Guidance modules keep their last attention weights while inside (for figures only: it
    costs memory)."""
    guidance = [m for m in model.modules() if hasattr(m, "last_attention") and hasattr(m, "record")]
    for m in guidance:
        m.record = True
    try:
        yield
    finally:
        for m in guidance:
            m.record = False
            m.last_attention = None


def write_attention_figure(parts, batch: dict[str, Tensor], preds: dict[str, Tensor], path: Path) -> list[Path]:
    """The attention maps of the batch's first sample, if the model recorded any; returns the files written."""
    from mtlbench.report.figures import save_png

    maps = [(name, m.last_attention) for name, m in parts.model.named_modules()
            if getattr(m, "record", False) and getattr(m, "last_attention", None) is not None]
    if not maps:
        return []
    save_png(attention_panels(sample_panels(parts, batch, preds, 0)["rgb"], maps), path)
    return [path]


def _save_gray(values: Tensor, path: Path) -> Path:
    from PIL import Image

    from mtlbench.report.figures import save_png

    arr = values.numpy().astype("uint8" if int(values.max()) < 256 else "uint16")  # 894 classes need 16 bit
    save_png(Image.fromarray(arr), path)
    return path


def attention_panels(rgb, maps: Sequence[tuple[str, Tensor]]):
    """The attention of the image's centre query over the source features, per guidance module."""
    from mtlbench.report.figures import attention_figure

    shown = []
    h, w = rgb.shape[:2]
    for name, att in maps:
        a = att[0].float().mean(0)  # heads averaged: queries × keys
        q = a.shape[0]
        side_q = int(round(q ** 0.5))
        side_k = int(round(a.shape[1] ** 0.5))
        centre = (side_q // 2) * side_q + side_q // 2
        label = name.rsplit(".", 1)[-1].replace("_to_", " -> ")  # "guidance.seg_to_depth" → "seg -> depth"
        shown.append((label, a[centre].reshape(side_k, side_k).cpu().numpy()))
    return attention_figure(rgb, shown, query=(h // 2, w // 2), title="attention of the centre query")

