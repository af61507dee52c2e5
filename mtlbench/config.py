"""Typed run configuration: presets, overrides, TOML in and out, validation.

A run is fully described by :class:`RunConfig`; ``config.toml`` in the run directory is that
object written out, and reading it back gives an equal object.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mtlbench.errors import MtlbenchError


@dataclass
class DataConfig:
    name: str = "synthrooms"
    root: str = ""  # dataset folder; synthrooms: its cache (default ~/.cache/mtlbench)
    size: int = 256  # square input side, pixels
    frames: int = 1449  # synthrooms only: frames rendered
    split: str = "seed"  # seed: random by fractions (the paper's); official: NYUv2's 795/654
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/val/test
    split_seed: int = 0
    val_frames: int = 80  # official split: validation frames carved from train
    classes: int = 40  # nyuv2: 40, 13 or 894
    raw_depth: bool = False  # nyuv2: rawDepths (holes = 0) instead of the in-painted depths
    scene_seed: int = 0  # synthrooms only
    holes: bool = False  # synthrooms only: Kinect-like depth holes
    max_depth: float = 10.0  # metres mapped to 1.0 for the depth loss
    clahe: bool = True
    clahe_clip: float = 2.0
    normalize: bool = True  # ImageNet mean/std
    augment: bool = True
    flip: bool = True
    scale: list[float] = field(default_factory=lambda: [0.6, 1.0])  # random-resized-crop area range
    color_jitter: float = 0.2
    edge_thickness: int = 1
    depth_edges: float = 0.0  # > 0: also mark depth discontinuities, |Sobel(log depth)| above this


@dataclass
class ModelConfig:
    name: str = "mtinet"
    backbone: str = "resnet50"
    width: int = 128  # channels per scale after the 1×1 reduction
    pretrained: bool = False
    weights: str = ""  # a local weights file for the backbone
    interaction: str = ""  # mtinet: guidance module (default guided_attention)


@dataclass
class LossConfig:
    depth: str = ""  # empty: the task's default loss
    seg: str = ""
    edge: str = ""
    depth_alpha: float = 1.0
    depth_beta: float = 1.0
    depth_gamma: float = 0.1
    edge_pos_weight: float = 0.95
    weighting: str = "fixed"
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    seed: int = 0
    # checkpoint criterion val/TASK/METRIC-or-loss; "auto": val/depth/loss (the seed's) when depth is
    # trained, else val/total/loss
    select: str = "auto"
    eval_batch_size: int = 16


@dataclass
class EvalConfig:
    """How metrics are computed (docs/evaluation.md); ``mtlbench eval`` can change them afterwards."""

    min_depth: float = 1e-3  # metres; ground truth at or below is invalid
    max_depth: float = 0.0  # metres; evaluation cap (ground truth above is invalid); 0: data.max_depth
    eigen_crop: bool = False  # evaluate depth inside Eigen's crop only
    boundaries: bool = True  # iBims-1 depth-boundary errors
    edge_tolerance: float = 0.011  # edge matching distance, fraction of the image diagonal (NYUD)
    edge_thresholds: int = 99  # thresholds 1/(K+1) .. K/(K+1)
    edge_nms: bool = True  # thin edge maps by non-maximum suppression before matching


@dataclass
class RunConfig:
    tasks: list[str] = field(default_factory=lambda: ["depth", "seg", "edge"])
    preset: str = "seed"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # the seed paper's protocol (§3, §6)
    "seed": {},
    # a CPU demo (about 2 minutes on 2 cores): small backbone, 128×128, few frames and epochs;
    # lr 1e-3 because the backbone starts from random weights, not ImageNet
    "quick": {
        "data": {"size": 128, "frames": 320},
        "model": {"backbone": "resnet18", "width": 64},
        "train": {"epochs": 4, "batch_size": 16, "lr": 1e-3},
    },
}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise MtlbenchError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
    cfg = from_dict(PRESETS[name], base=RunConfig())
    cfg.preset = name
    return cfg


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = getattr(hint, "__origin__", None)
    if hint is bool:
        if not isinstance(value, bool):
            raise MtlbenchError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MtlbenchError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MtlbenchError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MtlbenchError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise MtlbenchError(f"{where}: expected a list, got {value!r}")
        (item,) = hint.__args__
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MtlbenchError(f"{where}: expected a table, got {value!r}")
        _, item = hint.__args__
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported config type {hint!r}")


def from_dict(data: dict[str, Any], base: Any = None, where: str = "config") -> Any:
    """Overlay ``data`` on a copy of ``base`` (a config dataclass), checking names and types."""
    base = dataclasses.replace(base) if base is not None else RunConfig()
    hints = get_type_hints(type(base))
    known = {f.name for f in fields(base)}
    for key, value in data.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MtlbenchError(f"{where}: unknown key {key!r}{hint}")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise MtlbenchError(f"{where}.{key}: expected a table, got {value!r}")
            setattr(base, key, from_dict(value, current, f"{where}.{key}"))
        else:
            setattr(base, key, _coerce(value, hints[key], f"{where}.{key}"))
    return base


def validate(cfg: RunConfig) -> None:
    """Value checks that types alone do not catch."""
    d, t = cfg.data, cfg.train
    if d.size < 32:
        raise MtlbenchError(f"image size {d.size} is too small: use at least 32 (a multiple of the backbone stride)")
    if len(d.fractions) != 3 or any(f < 0 for f in d.fractions) or abs(sum(d.fractions) - 1) > 1e-6:
        raise MtlbenchError(f"data.fractions must be three non-negative numbers summing to 1, got {d.fractions}")
    if len(d.scale) != 2 or not 0 < d.scale[0] <= d.scale[1] <= 1:
        raise MtlbenchError(f"data.scale must be [min, max] with 0 < min <= max <= 1, got {d.scale}")
    if d.depth_edges < 0:
        raise MtlbenchError(f"data.depth_edges must be 0 (off) or positive, got {d.depth_edges}")
    if d.max_depth <= 0:
        raise MtlbenchError(f"data.max_depth must be positive, got {d.max_depth}")
    for name, value in [("train.epochs", t.epochs), ("train.batch_size", t.batch_size),
                        ("train.eval_batch_size", t.eval_batch_size), ("data.frames", d.frames),
                        ("data.edge_thickness", d.edge_thickness), ("data.val_frames", d.val_frames)]:
        if value < 1:
            raise MtlbenchError(f"{name} must be at least 1, got {value}")
    lo = cfg.loss
    for name, value in [("train.seed", t.seed), ("data.split_seed", d.split_seed), ("data.scene_seed", d.scene_seed),
                        ("train.weight_decay", t.weight_decay), ("loss.depth_alpha", lo.depth_alpha),
                        ("loss.depth_beta", lo.depth_beta), ("loss.depth_gamma", lo.depth_gamma),
                        ("data.color_jitter", d.color_jitter)] + [(f"loss.weights.{k}", v) for k, v in lo.weights.items()]:
        if value < 0:
            raise MtlbenchError(f"{name} must not be negative, got {value}")
    if not 0 < lo.edge_pos_weight < 1:
        raise MtlbenchError(f"loss.edge_pos_weight must lie strictly between 0 and 1, got {lo.edge_pos_weight}")
    if d.clahe_clip <= 0:
        raise MtlbenchError(f"data.clahe_clip must be positive, got {d.clahe_clip}")
    if d.classes not in (13, 40, 894):
        raise MtlbenchError(f"data.classes must be 40, 13 or 894, got {d.classes}")
    if cfg.model.width < 8 or cfg.model.width % 4:
        raise MtlbenchError(f"model.width must be a multiple of 4 and at least 8, got {cfg.model.width}")
    e = cfg.eval
    if e.max_depth < 0:
        raise MtlbenchError(f"eval.max_depth (--max-depth) must be 0 (use data.max_depth) or positive, got {e.max_depth}")
    cap = e.max_depth or d.max_depth
    if not 0 <= e.min_depth < cap:
        raise MtlbenchError(f"eval.min_depth (--min-depth) {e.min_depth} must be at least 0 and below the cap {cap}")
    if not 0 < e.edge_tolerance < 1:
        raise MtlbenchError(f"eval.edge_tolerance (--edge-tolerance) is a fraction of the image diagonal in (0, 1), got {e.edge_tolerance}")
    if not 1 <= e.edge_thresholds <= 999:
        raise MtlbenchError(f"eval.edge_thresholds (--edge-thresholds) must be between 1 and 999, got {e.edge_thresholds}")
    if t.lr <= 0:
        raise MtlbenchError(f"train.lr must be positive, got {t.lr}")
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise MtlbenchError(f"unknown device {t.device!r}: use auto, cpu, cuda or cuda:N")
    parts = resolved_select(cfg).split("/")
    if len(parts) != 3 or parts[0] != "val" or parts[1] not in cfg.tasks + ["total"]:
        raise MtlbenchError(
            f"train.select {t.select!r} must read val/TASK/METRIC with TASK one of {', '.join(cfg.tasks)} "
            f"or total, e.g. val/depth/loss or val/seg/miou")


def resolved_select(cfg: RunConfig) -> str:
    """The checkpoint criterion with "auto" spelled out."""
    if cfg.train.select != "auto":
        return cfg.train.select
    return "val/depth/loss" if "depth" in cfg.tasks else "val/total/loss"


def load(path: str | Path) -> RunConfig:
    """Read a ``config.toml``; any problem is one :class:`MtlbenchError` line."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MtlbenchError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MtlbenchError(f"cannot read config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MtlbenchError(f"config {path} is not valid TOML: {exc}") from None
    cfg = from_dict(data, RunConfig(), where=str(path))
    validate(cfg)
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def dumps(cfg: RunConfig) -> str:
    """``cfg`` as TOML: top-level scalars first, then one table per section."""
    data = cfg.to_dict()
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
