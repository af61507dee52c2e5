"""The tasks: depth, semantic segmentation, edges and surface normals.

A :class:`Task` knows its head width, the batch key of its target, its default loss, its
metrics, how to turn a raw head output into a prediction, and how to colour one for figures.
Task factories take the dataset's :class:`DatasetInfo` (class count, maximum depth).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.errors import MtlbenchError
from mtlbench.metrics import DepthMetrics, EdgeMetrics, Metric, NormalsMetrics, SegMetrics, records
from mtlbench.registry import TASKS


@dataclass(frozen=True)
class DatasetInfo:
    """What tasks and models need to know of a dataset."""

    num_classes: int = 40
    max_depth: float = 10.0
    class_names: tuple[str, ...] = ()
    ignore_index: int = 255  # 65535 where classes do not fit in a byte (NYUv2's 894)
    normals: bool = False  # the frames carry surface normals (the normals task needs them)


@cache
def nyu40_names() -> tuple[str, ...]:
    """The 40 NYUv2 class names (Gupta et al.), in 0-based id order."""
    text = resources.files("mtlbench.resources").joinpath("nyuv2_names40.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def voc_palette(n: int = 256) -> Tensor:
    """The PASCAL-VOC colour map (n×3 uint8), the palette NYUv2 figures use."""
    ids = torch.arange(n)
    palette = torch.zeros(n, 3, dtype=torch.int64)
    for bit in range(8):
        for ch in range(3):
            palette[:, ch] |= ((ids >> (3 * bit + ch)) & 1) << (7 - bit)
    return palette.to(torch.uint8)


def _ramp(x: Tensor) -> Tensor:
    """A perceptual-ish blue→yellow ramp for values in [0, 1] (H×W → H×W×3 uint8)."""
    x = x.clamp(0, 1)
    rgb = torch.stack([x.pow(0.8), 0.15 + 0.75 * x, 0.55 * (1 - x) + 0.1], dim=-1)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(frozen=True)
class Task:
    """Base task; subclasses define prediction, metrics and colouring."""

    name: str
    out_channels: int
    target_key: str
    default_loss: str
    key_metric: str = ""  # the metric that defines "better"; "": the one its records mark key

    def __post_init__(self) -> None:
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

    def predict(self, output: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        """A fresh accumulator of this task's metrics, computed as ``options`` say."""
        raise NotImplementedError

    def colorize(self, prediction: Tensor) -> Tensor:
        """One prediction or target (H×W) as an H×W×3 uint8 image."""
        raise NotImplementedError


@dataclass(frozen=True)
class DepthTask(Task):
    max_depth: float = 10.0

    def predict(self, output: Tensor) -> Tensor:
        """Normalised head output → metres (B×1×H×W)."""
        return output.float().clamp(0.0, 1.0) * self.max_depth

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        o = options or EvalConfig()
        return DepthMetrics(self.max_depth, min_depth=o.min_depth, cap=o.max_depth or self.max_depth,
                            eigen_crop=o.eigen_crop, boundaries=o.boundaries)

    def colorize(self, prediction: Tensor, near: float = 0.0, far: float | None = None) -> Tensor:
        """Depth in metres as colours, ``near`` brightest, ``far`` (default ``max_depth``) darkest;
        figures pass one range to ground truth and prediction so that their colours compare."""
        far = self.max_depth if far is None else far
        # near is bright, as in the seed's figures; invalid (0) is black
        img = _ramp(1.0 - (prediction.float() - near) / max(far - near, 1e-6))
        return torch.where((prediction > 0)[..., None], img, torch.zeros_like(img))


@dataclass(frozen=True)
class SegTask(Task):
    class_names: tuple[str, ...] = ()

    def predict(self, output: Tensor) -> Tensor:
        return output.argmax(1)

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        return SegMetrics(self.out_channels, self.class_names)

    def colorize(self, prediction: Tensor) -> Tensor:
        # class c takes VOC colour c+1 (0 is reserved for "unlabelled", drawn black)
        palette = torch.cat([voc_palette(256)[1:], torch.zeros(1, 3, dtype=torch.uint8)])
        return palette[prediction.long().clamp(0, 255)]


@dataclass(frozen=True)
class EdgeTask(Task):
    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        o = options or EvalConfig()
        return EdgeMetrics(o.edge_tolerance, o.edge_thresholds, o.edge_nms, matching=o.edge_matching)

    def colorize(self, prediction: Tensor) -> Tensor:
        return (255 * (1 - prediction.float().clamp(0, 1))).round().to(torch.uint8)[..., None].expand(
            *prediction.shape, 3)


@dataclass(frozen=True)
class NormalsTask(Task):
    def predict(self, output: Tensor) -> Tensor:
        """Raw head output → unit normals (B×3×H×W)."""
        return torch.nn.functional.normalize(output.float(), dim=1, eps=1e-6)

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        return NormalsMetrics()

    def colorize(self, prediction: Tensor) -> Tensor:
        """3×H×W unit normals as (n + 1) / 2 in RGB (x red, y green, z blue); invalid black."""
        n = prediction.float()
        img = ((n + 1) / 2).clamp(0, 1).permute(1, 2, 0).mul(255).round().to(torch.uint8)
        return torch.where((n.abs().sum(0) > 0)[..., None], img, torch.zeros_like(img))


@TASKS.register("depth")
def depth(info: DatasetInfo) -> Task:
    """Monocular depth: 1 channel, normalised to [0, 1] by the maximum depth; metrics in metres."""
    return DepthTask("depth", 1, "depth", "structured_depth", max_depth=info.max_depth)


@TASKS.register("seg")
def seg(info: DatasetInfo) -> Task:
    """Semantic segmentation: one channel per class (NYU-40 by default), 255 ignored."""
    names = info.class_names or (nyu40_names() if info.num_classes == 40 else ())
    return SegTask("seg", info.num_classes, "seg", "cross_entropy", class_names=names)


@TASKS.register("edge")
def edge(info: DatasetInfo) -> Task:
    """Edge detection: 1 logit channel, targets from label boundaries."""
    return EdgeTask("edge", 1, "edge", "balanced_bce")


@TASKS.register("normals")
def normals(info: DatasetInfo) -> Task:
    """Surface normals: 3 channels normalised to unit vectors in the camera frame (x right, y up,
    z towards the viewer); metrics are angular errors in degrees."""
    return NormalsTask("normals", 3, "normals", "normals_l1")


def parse_tasks(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"depth,seg"`` → ``("depth", "seg")``: non-empty, known, no repeats, order kept."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [s.strip() for s in spec]
    names = [n for n in names if n]
    if not names:
        raise MtlbenchError(f"empty task list: pass one or more of {', '.join(TASKS.names())}, e.g. --task depth,seg")
    for n in names:
        TASKS.entry(n)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MtlbenchError(f"task listed twice: {', '.join(dup)}")
    return tuple(names)


def build_tasks(names: tuple[str, ...], info: DatasetInfo) -> dict[str, Task]:
    return {n: TASKS.build(n, info) for n in names}
