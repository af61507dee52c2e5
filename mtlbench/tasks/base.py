"""The task contract: what a task reads from frames, how its targets move under augmentation,
how they are derived and scored, and how its predictions are made and drawn.

A dataset declares the targets its frames carry (:class:`DatasetInfo.targets`, key → :class:`Target`);
a task names the key it trains on and may derive it after augmentation from others (edges from
labels). The core (pipeline, trainer, reports) reads tasks and targets only through this module,
so a plugin adds a task with one module and one registration::

    @TASKS.register("saliency")
    def saliency(info: DatasetInfo) -> Task: return SaliencyTask("saliency", 1, "saliency", "saliency_bce")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.metrics import Metric, records

# how a target array moves when a frame is flipped and cropped (always nearest: values are copied)
CONTINUOUS = "continuous"  # a map of numbers (depth, a probability); B×C×H×W float in batches
LABEL = "label"  # integer labels (one channel); B×H×W int64 in batches
VECTOR = "vector"  # per-pixel vectors whose first component is x: a mirror flips its sign (normals)
KINDS = (CONTINUOUS, LABEL, VECTOR)
HEADS = ("dense", "classes", "boundary")  # the decoder kinds a task can ask a model for


@dataclass(frozen=True)
class Target:
    """One target a dataset's frames carry: stored N×H×W (one channel) or N×H×W×C.

    Attributes:
        kind: one of :data:`KINDS`.
        channels: values per pixel.
        zoom: metric distances, divided by a training crop's zoom where the protocol does
            (``data.depth_zoom``): a crop shown larger looks nearer.
    """

    kind: str
    channels: int = 1
    zoom: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if self.kind == LABEL and self.channels != 1:
            raise ValueError("a label target has one channel")

    def to_batch(self, array: Tensor) -> Tensor:
        """Stored frames (N×H×W or N×H×W×C) as batches hold them: labels N×H×W int64, others N×C×H×W float."""
        return array.long() if self.kind == LABEL else self.channels_of(array)

    def channels_of(self, array: Tensor) -> Tensor:
        """Stored frames as N×C×H×W float, for resampling alongside other targets."""
        return array.float()[:, None] if array.dim() == 3 else array.float().permute(0, 3, 1, 2)

    def from_channels(self, maps: Tensor) -> Tensor:
        """:meth:`channels_of`'s output (resampled) as batches hold it."""
        return maps[:, 0].long() if self.kind == LABEL else maps


@dataclass(frozen=True)
class DatasetInfo:
    """What tasks, losses and models need to know of a dataset: its classes, depth range and the
    targets its frames carry (key → :class:`Target`)."""

    num_classes: int = 40
    max_depth: float = 10.0
    class_names: tuple[str, ...] = ()
    ignore_index: int = 255  # 65535 where classes do not fit in a byte (NYUv2's 894)
    targets: Mapping[str, Target] = field(default_factory=lambda: dict(RGBD_TARGETS))

    @property
    def normals(self) -> bool:
        """Whether the frames carry surface normals."""
        return "normals" in self.targets

    def to_dict(self) -> dict[str, Any]:
        """As a checkpoint keeps it, so that ``predict`` needs no dataset."""
        return {"num_classes": self.num_classes, "max_depth": self.max_depth, "class_names": list(self.class_names),
                "ignore_index": self.ignore_index,
                "targets": {k: [t.kind, t.channels, t.zoom] for k, t in self.targets.items()}}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> DatasetInfo:
        """:meth:`to_dict` read back; checkpoints written before targets were listed had depth
        and labels, and normals where ``normals`` says."""
        if "targets" in saved:
            targets = {k: Target(str(v[0]), int(v[1]), bool(v[2])) for k, v in saved["targets"].items()}
        else:
            targets = dict(RGBD_TARGETS) | ({"normals": NORMALS_TARGET} if saved.get("normals") else {})
        return cls(int(saved["num_classes"]), float(saved["max_depth"]), tuple(saved["class_names"]),
                   int(saved["ignore_index"]), targets)


# the targets of indoor RGB-D frames (NYUv2, synthrooms)
RGBD_TARGETS: Mapping[str, Target] = {"depth": Target(CONTINUOUS, zoom=True), "seg": Target(LABEL)}
NORMALS_TARGET = Target(VECTOR, 3)
EDGE_TARGET = Target(CONTINUOUS)  # a dataset's own edge maps, {0, 1}


def voc_palette(n: int = 256) -> Tensor:
    """The PASCAL-VOC colour map (n×3 uint8), the palette NYUv2 figures use."""
    ids = torch.arange(n)
    palette = torch.zeros(n, 3, dtype=torch.int64)
    for bit in range(8):
        for ch in range(3):
            palette[:, ch] |= ((ids >> (3 * bit + ch)) & 1) << (7 - bit)
    return palette.to(torch.uint8)


def ramp(x: Tensor) -> Tensor:
    """A perceptual-ish blue→yellow ramp for values in [0, 1] (H×W → H×W×3 uint8)."""
    x = x.clamp(0, 1)
    rgb = torch.stack([x.pow(0.8), 0.15 + 0.75 * x, 0.55 * (1 - x) + 0.1], dim=-1)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def gray(x: Tensor) -> Tensor:
    """Values in [0, 1] (H×W) drawn dark where high, as edge maps are (H×W×3 uint8)."""
    return (255 * (1 - x.float().clamp(0, 1))).round().to(torch.uint8)[..., None].expand(*x.shape, 3)


@dataclass(frozen=True)
class Task:
    """One task. Subclasses define prediction, metrics and colouring; the defaults of the other
    hooks fit a task that trains on a target of its own name, as the dataset stores it.

    Attributes:
        name: the task's registered name.
        out_channels: the head's width.
        target_key: the batch key of its target.
        default_loss: the loss it trains with unless the configuration names another.
        key_metric: the metric that defines "better"; "": the one its records mark key.
        head: the kind of decoder it needs (:data:`HEADS`): ``dense`` maps (depth, normals,
            saliency), per-pixel ``classes``, or thin ``boundary`` maps (edges).
    """

    name: str
    out_channels: int
    target_key: str
    default_loss: str
    key_metric: str = ""
    head: str = "dense"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"task {self.name}: head {self.head!r} is not one of {', '.join(HEADS)}")
        if not self.key_metric:
            object.__setattr__(self, "key_metric", records.key_metric(self.name))

    @property
    def higher_is_better(self) -> bool:
        """Direction of ``key_metric``, as its record says (its metric class's, for a plugin
        task without records)."""
        record = records.find(self.name, self.key_metric)
        if record is None:
            return self.key_metric in self.metrics().higher_is_better
        return bool(record.higher_is_better)

    def missing(self, info: DatasetInfo) -> str | None:
        """What a dataset with ``info`` lacks for this task to train on it, or ``None``."""
        if self.target_key in info.targets:
            return None
        return f"its frames carry no {self.target_key!r} target"

    def derive(self, batch: dict[str, Tensor]) -> None:
        """Add this task's target to an augmented ``batch`` where it is made from others (in place)."""

    def score_target(self, batch: Mapping[str, Tensor], info: DatasetInfo) -> Tensor:
        """The ground truth metrics compare predictions with (``batch`` as targets are scored:
        augmented-free, possibly at the protocol's resolution)."""
        return batch[self.target_key]

    def predict(self, output: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        """A fresh accumulator of this task's metrics, computed as ``options`` say."""
        raise NotImplementedError

    def colorize(self, prediction: Tensor) -> Tensor:
        """One prediction or target of one frame (H×W, or C×H×W for several channels) as an H×W×3 uint8 image."""
        raise NotImplementedError

    def colorize_pair(self, target: Tensor | None, prediction: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Ground truth and prediction of one frame drawn to be compared side by side (either may be ``None``)."""
        return (None if target is None else self.colorize(target),
                None if prediction is None else self.colorize(prediction))

    def save(self, prediction: Tensor, stem: Path) -> Path:
        """One frame's prediction (as :meth:`predict` gives it, less the batch dimension) written
        as ``{stem}_{name}`` plus a suffix; default: float32 ``.npy``."""
        import numpy as np

        path = stem.with_name(f"{stem.name}_{self.name}.npy")
        np.save(path, prediction.float().squeeze(0).cpu().numpy().astype(np.float32))
        return path
