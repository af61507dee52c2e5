"""Typed run configuration: presets, overrides, TOML in and out, validation.

A run is fully described by :class:`RunConfig`; ``config.toml`` in the run directory is that
object written out, and reading it back gives an equal object.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints, overload

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mtlbench.errors import MtlbenchError
from mtlbench.spellings import GONE, MOVED, preset_name, renamed, upgrade_legacy
from mtlbench.spellings import MOVED_TO_TASKS as MOVED_TO_TASKS  # re-exported: used as config's
from mtlbench.spellings import ConfigWarning as ConfigWarning
from mtlbench.spellings import protocol_name as protocol_name

_Config = TypeVar("_Config")  # RunConfig or one of its section dataclasses


@dataclass
class DataConfig:
    """The dataset and the input pipeline; the dataset's own options go in ``[data.options]``."""

    name: str = "synthrooms"
    root: str = ""  # dataset folder; synthrooms: its cache (default ~/.cache/mtlbench)
    size: int = 256  # square input side, pixels
    clahe: bool = True
    clahe_clip: float = 2.0
    normalize: bool = True  # ImageNet mean/std
    augment: bool = True
    flip: bool = True
    scale: list[float] = field(default_factory=lambda: [0.6, 1.0])  # random-resized-crop area range
    color_jitter: float = 0.2
    depth_zoom: str = "auto"  # divide depth by the crop's zoom: on, off, or auto (as the dataset's protocol does)
    options: dict[str, Any] = field(default_factory=dict)  # what the dataset declares (frames, split, …)


@dataclass
class ModelConfig:
    """The network; the model's own options go in ``[model.options]``, those of the interaction it
    uses (if it has interaction points) in ``[model.interaction]``."""

    name: str = "mtinet"
    backbone: str = "resnet50"
    width: int = 128  # channels per scale after the 1×1 reduction
    pretrained: bool = False
    weights: str = ""  # a local weights file for the backbone
    options: dict[str, Any] = field(default_factory=dict)  # what the model declares (interaction, …)
    # the options of the interaction model.options.interaction names (models with interaction points)
    interaction: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Per task, its loss (``[loss.names]``, default: the task's) and that loss's options
    (``[loss.options.TASK]``)."""

    names: dict[str, str] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class WeightingConfig:
    """How the task losses become the step's gradients; options in ``[weighting.options]``."""

    name: str = "fixed"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    device: str = "auto"
    # auto: bf16 autocast on a GPU that supports it, else fp32; fp16 adds a gradient scaler (GPU)
    precision: str = "auto"
    channels_last: bool = False
    compile: str = "off"  # torch.compile of forward + losses: off, on, or auto (eager where it cannot)
    compile_mode: str = "reduce-overhead"  # CUDA graphs: the eager step is launch-bound (docs/benchmarks.md)
    sync_bn: bool = False  # BatchNorm statistics over the global batch when several processes train
    seed: int = 0
    # checkpoint criterion val/TASK/METRIC-or-loss; "auto": val/depth/loss (as *Beneath the Surface*
    # selects) when depth is trained, else val/total/loss
    select: str = "auto"
    eval_batch_size: int = 16


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EDGE_MATCHING = ("auto", "fast", "exact")
RESOLUTIONS = ("auto", "input")
DEPTH_ZOOM = ("auto", "on", "off")
COMPILE = ("off", "on", "auto")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class EvalConfig:
    """How metrics are computed (docs/evaluation.md); ``mtlbench eval`` can change them afterwards."""

    min_depth: float = 1e-3  # metres; ground truth at or below is invalid
    max_depth: float = 0.0  # metres; evaluation cap (ground truth above is invalid); 0: the dataset's range
    eigen_crop: bool = False  # evaluate depth inside Eigen's crop only
    boundaries: bool = True  # iBims-1 depth-boundary errors
    edge_tolerance: float = 0.011  # edge matching distance, fraction of the image diagonal (NYUD)
    edge_thresholds: int = 99  # thresholds 1/(K+1) .. K/(K+1)
    edge_nms: bool = True  # thin edge maps by non-maximum suppression before matching
    # one-to-one BSDS matching (exact) or many-to-one (fast); auto: exact for the test split and
    # `mtlbench eval`, fast for the validation during training
    edge_matching: str = "auto"
    # auto: score at the ground truth's own resolution and crop where the dataset has one (the
    # published protocols); input: at the training resolution, as validation during training is
    resolution: str = "auto"


@dataclass
class RunConfig:
    tasks: list[str] = field(default_factory=lambda: ["depth", "seg", "edge"])
    preset: str = "beneath"
    # per trained task, the options it declares (``[task_options.edge] thickness = 2``)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # the protocol of *Beneath the Surface* (§3, §6), the paper mtlbench reproduces
    "beneath": {},
    # a CPU demo (about 2 minutes on 2 cores): small backbone, 128×128, few frames and epochs;
    # lr 1e-3 because the backbone starts from random weights, not ImageNet
    "quick": {
        "data": {"size": 128},
        "model": {"backbone": "resnet18", "width": 64},
        "train": {"epochs": 4, "batch_size": 16, "lr": 1e-3},
    },
}

# Dataset options a preset sets when (and only when) the run uses that dataset.
PRESET_DATASET_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {"synthrooms": {"frames": 320}},
}


def preset(name: str) -> RunConfig:
    name = preset_name(name)
    if name not in PRESETS:
        raise MtlbenchError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
    cfg = from_dict(PRESETS[name], base=RunConfig())
    cfg.preset = name
    return cfg


def preset_dataset_options(cfg: RunConfig) -> dict[str, Any]:
    """The options ``cfg``'s preset gives its dataset (under the ones the user set)."""
    return dict(PRESET_DATASET_OPTIONS.get(cfg.preset, {}).get(cfg.data.name, {}))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = getattr(hint, "__origin__", None)
    if hint is Any:  # option tables: checked against what their factory declares
        return value
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


@overload
def from_dict(data: dict[str, Any], base: None = None, where: str = "config") -> RunConfig: ...
@overload
def from_dict(data: dict[str, Any], base: _Config, where: str = "config") -> _Config: ...
def from_dict(data: dict[str, Any], base: Any = None, where: str = "config") -> Any:
    """Overlay ``data`` on a copy of ``base`` (a config dataclass), checking names and types."""
    base = dataclasses.replace(base) if base is not None else RunConfig()
    hints = get_type_hints(type(base))
    known = {f.name for f in fields(base)}
    for key, value in data.items():
        section = where.rsplit(".", 1)[-1]
        moved = MOVED.get(f"{section}.{key}")
        if key not in known or (moved and not isinstance(value, dict)):  # model.interaction was a name
            if moved:
                raise MtlbenchError(f"{where}: {section}.{key} is now {moved} (options live in the table of "
                                    f"what takes them)")
            if f"{section}.{key}" in GONE:
                raise MtlbenchError(f"{where}: {section}.{key} is gone: {GONE[f'{section}.{key}']}")
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
    """Value checks that types alone do not catch (options are checked by what takes them)."""
    d, t = cfg.data, cfg.train
    if d.size < 32:
        raise MtlbenchError(f"data.size {d.size} is too small: use at least 32 (a multiple of the backbone stride)")
    if len(d.scale) != 2 or not 0 < d.scale[0] <= d.scale[1] <= 1:
        raise MtlbenchError(f"data.scale must be [min, max] with 0 < min <= max <= 1, got {d.scale}")
    for name, value in [("train.epochs", t.epochs), ("train.batch_size", t.batch_size),
                        ("train.eval_batch_size", t.eval_batch_size)]:
        if value < 1:
            raise MtlbenchError(f"{name} must be at least 1, got {value}")
    non_negative: list[tuple[str, float]] = [("train.seed", t.seed), ("train.weight_decay", t.weight_decay),
                                             ("data.color_jitter", d.color_jitter)]
    for name, amount in non_negative:
        if amount < 0:
            raise MtlbenchError(f"{name} must not be negative, got {amount}")
    if d.clahe_clip <= 0:
        raise MtlbenchError(f"data.clahe_clip must be positive, got {d.clahe_clip}")
    if cfg.model.width < 8 or cfg.model.width % 4:
        raise MtlbenchError(f"model.width must be a multiple of 4 and at least 8, got {cfg.model.width}")
    for section, table in (("loss.names", cfg.loss.names), ("loss.options", cfg.loss.options),
                           ("task_options", cfg.task_options)):
        extra = [k for k in table if k not in cfg.tasks]
        if extra:
            raise MtlbenchError(f"{section} names task {', '.join(extra)}, which this run does not train "
                                f"(tasks: {', '.join(cfg.tasks)})")
    e = cfg.eval
    if e.max_depth < 0:
        raise MtlbenchError("eval.max_depth must be 0 (the dataset's range) or positive, "
                            f"got {e.max_depth}")
    if e.min_depth < 0 or (e.max_depth and e.min_depth >= e.max_depth):
        raise MtlbenchError(f"eval.min_depth {e.min_depth} must be at least 0 and below eval.max_depth "
                            f"{e.max_depth}")
    if not 0 < e.edge_tolerance < 1:
        raise MtlbenchError("eval.edge_tolerance is a fraction of the image diagonal in (0, 1), "
                            f"got {e.edge_tolerance}")
    if not 1 <= e.edge_thresholds <= 999:
        raise MtlbenchError("eval.edge_thresholds must be between 1 and 999, "
                            f"got {e.edge_thresholds}")
    if t.lr <= 0:
        raise MtlbenchError(f"train.lr must be positive, got {t.lr}")
    choices: list[tuple[str, str, tuple[str, ...]]] = [
        ("train.precision", t.precision, PRECISIONS), ("train.compile", t.compile, COMPILE),
        ("train.compile_mode", t.compile_mode, COMPILE_MODES),
        ("eval.edge_matching", e.edge_matching, EDGE_MATCHING),
        ("eval.resolution", e.resolution, RESOLUTIONS),
        ("data.depth_zoom", d.depth_zoom, DEPTH_ZOOM)]
    for setting, chosen, allowed in choices:
        if chosen not in allowed:
            raise MtlbenchError(f"{setting} {chosen!r} is not one of {', '.join(allowed)}")
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise MtlbenchError(f"train.device {t.device!r} is not a device: use auto, cpu, cuda or cuda:N")
    criterion(cfg)


@dataclass(frozen=True)
class Criterion:
    """The checkpoint criterion ``val/TASK/METRIC`` (METRIC may be ``loss``), parsed once."""

    task: str
    metric: str

    def __str__(self) -> str:
        return f"val/{self.task}/{self.metric}"


def criterion(cfg: RunConfig) -> Criterion:
    """``train.select`` parsed ("auto": val/depth/loss, the paper's, when depth is trained, else
    val/total/loss). Whether the metric exists is checked where the task's metrics are known."""
    select = resolved_select(cfg)
    parts = select.split("/")
    if len(parts) != 3 or parts[0] != "val" or parts[1] not in list(cfg.tasks) + ["total"] or not parts[2]:
        raise MtlbenchError(
            f"train.select {cfg.train.select!r} must read val/TASK/METRIC with TASK one of {', '.join(cfg.tasks)} "
            f"or total, e.g. val/depth/loss or val/seg/miou")
    if parts[1] == "total" and parts[2] != "loss":
        raise MtlbenchError(f"train.select {select!r}: total has only a loss; use val/total/loss")
    return Criterion(parts[1], parts[2])


def resolved_select(cfg: RunConfig) -> str:
    """The checkpoint criterion with "auto" spelled out."""
    if cfg.train.select != "auto":
        return cfg.train.select
    return "val/depth/loss" if "depth" in cfg.tasks else "val/total/loss"


def named_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key a configuration's table (as read from TOML) gives, tables included."""
    out = set()
    for k, v in data.items():
        key = f"{prefix}{k}"
        out.add(key)
        if isinstance(v, dict):
            out |= named_keys(v, key + ".")
    return out


def load(path: str | Path, named: set[str] | None = None) -> RunConfig:
    """Read a ``config.toml``; any problem is one :class:`MtlbenchError` line. ``named`` gets
    the dotted keys the file gives itself (:mod:`mtlbench.settings` keeps the options of a
    choice the file leaves at its default)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MtlbenchError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MtlbenchError(f"cannot read config {path}: {exc}") from None
    return loads(text, str(path), named)


def loads(text: str, where: str = "config", named: set[str] | None = None) -> RunConfig:
    """A ``config.toml``'s text as a checked :class:`RunConfig`; ``where`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MtlbenchError(f"config {where} is not valid TOML: {exc}") from None
    data = renamed(upgrade_legacy(data, RunConfig().tasks, DataConfig.name), DataConfig.name)
    if named is not None:
        named |= named_keys(data)
    cfg = from_dict(data, RunConfig(), where=where)
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


def _toml_table(name: str, values: dict[str, Any], nested: list[str]) -> list[str]:
    """``[name]`` with its scalars, then its ``nested`` keys as sub-tables."""
    lines = ["", f"[{name}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if k not in nested]
    for k in nested:
        lines += _toml_table(f"{name}.{k}", values[k], [])
    return lines


def dumps(cfg: RunConfig) -> str:
    """``cfg`` as TOML: top-level scalars first, then one table per section, options tables under
    their section."""
    data = cfg.to_dict()
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    if not data["model"]["interaction"]:  # written for models with interaction points only
        del data["model"]["interaction"]
    for section, values in data.items():
        if isinstance(values, dict):
            nested = [k for k, v in values.items() if isinstance(v, dict)]
            lines += _toml_table(section, values, nested)
    return "\n".join(lines) + "\n"
