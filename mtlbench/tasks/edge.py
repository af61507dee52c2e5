"""Edge detection: one logit channel. Training targets are drawn from the labels after
augmentation (or the dataset's own edge maps, where it has them); scores are taken against
BSDS's one-pixel label boundaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.filters import sobel
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.data.images import write_gray_png
from mtlbench.metrics import EdgeMetrics, Metric
from mtlbench.options import Option, at_least, one_of
from mtlbench.registry import TASKS
from mtlbench.tasks.base import DatasetInfo, Task, gray

EDGE_TARGETS = ("both_sides", "one_side")


def depth_edges(depth: Tensor, threshold: float) -> Tensor:
    """Depth discontinuities (B×1×H×W metres → {0, 1}): the magnitude of kornia's normalised
    Sobel of log depth above ``threshold``, where the whole 3×3 neighbourhood has valid depth.
    A step by a depth ratio r gives ln(r)/2 on both sides (0.35 for r = 2)."""
    valid = depth > 0
    grad = sobel(torch.log(depth.clamp_min(1e-3)))
    whole = -F.max_pool2d(-valid.float(), 3, stride=1, padding=1) > 0.5
    return ((grad > threshold) & whole).float()


def dilate(edges: Tensor, thickness: int) -> Tensor:
    """``edges`` (B×1×H×W {0, 1}) grown by ``thickness − 1`` pixels (a square)."""
    if thickness <= 1:
        return edges
    k = 2 * (thickness - 1) + 1
    return (F.max_pool2d(edges.float(), k, stride=1, padding=k // 2) > 0).float()


def label_edges(seg: Tensor, thickness: int = 1) -> Tensor:
    """Edge targets from label boundaries (B×1×H×W labels → B×1×H×W float {0, 1}).

    A pixel is an edge where its 3×3 neighbourhood holds another label (both sides of a
    boundary; the image border is replicated, so it is no edge); ``thickness`` > 1 dilates that
    by ``thickness − 1`` pixels. This is the support of the label map's Sobel response, made
    exact: Sobel itself cancels to zero on 1-pixel lines and isolated pixels.
    """
    padded = F.pad(seg.float(), (1, 1, 1, 1), mode="replicate")
    edges = F.max_pool2d(padded, 3, stride=1) != -F.max_pool2d(-padded, 3, stride=1)
    return dilate(edges.float(), thickness)


def boundary_map(seg: Tensor) -> Tensor:
    """One-pixel label boundaries, as BSDS's ``seg2bmap`` draws them (B×1×H×W → float {0, 1}).

    A pixel is a boundary where its label differs from its right, lower or lower-right
    neighbour; the last row compares only to the right, the last column only downwards, and the
    bottom-right pixel is never one. So each label change is marked on one side only, the
    ground truth published edge scores are computed against. Ignored labels (255) are labels
    like any other here: an unlabelled region's outline is a boundary.
    """
    s = seg
    b = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    inner = b[..., :-1, :-1]
    inner |= s[..., :-1, :-1] != s[..., :-1, 1:]
    inner |= s[..., :-1, :-1] != s[..., 1:, :-1]
    inner |= s[..., :-1, :-1] != s[..., 1:, 1:]
    b[..., -1, :-1] = s[..., -1, :-1] != s[..., -1, 1:]
    b[..., :-1, -1] = s[..., :-1, -1] != s[..., 1:, -1]
    return b.float()


@dataclass(frozen=True)
class EdgeTask(Task):
    """Edges; ``labels`` is the label target they are drawn from where the dataset has no edge maps.

    Attributes:
        thickness: half-width of the training targets drawn from labels (see :func:`label_edges`).
        targets: ``"both_sides"``: :func:`label_edges` (both sides of each label change);
            ``"one_side"``: :func:`boundary_map` (BSDS's one-pixel boundaries, what edges are
            scored against), dilated like ``label_edges`` when ``thickness`` > 1.
        depth_edges: > 0 adds depth discontinuities to the training targets (:func:`depth_edges`).
    """

    labels: str = "seg"
    thickness: int = 1
    targets: str = "both_sides"
    depth_edges: float = 0.0

    def missing(self, info: DatasetInfo) -> str | None:
        if self.target_key in info.targets or self.labels in info.targets:
            return None
        return (f"its frames carry neither edge maps ({self.target_key!r}) nor labels to draw them from "
                f"({self.labels!r})")

    def derive(self, batch: dict[str, Tensor]) -> None:
        """Training targets after augmentation, so that they always match the labels."""
        if self.target_key in batch:  # the dataset's own edge maps, augmented with the frame
            edge = batch[self.target_key]
        elif self.labels not in batch:  # images without ground truth (predict)
            return
        elif self.targets == "one_side":
            edge = dilate(boundary_map(batch[self.labels][:, None]), self.thickness)
        else:
            edge = label_edges(batch[self.labels][:, None], self.thickness)
        if self.depth_edges > 0 and "depth" in batch:
            edge = torch.maximum(edge, depth_edges(batch["depth"], self.depth_edges))
        batch[self.target_key] = edge

    def score_target(self, batch: Mapping[str, Tensor], info: DatasetInfo) -> Tensor:
        """The dataset's own edge maps, or BSDS's one-pixel boundaries of the labels, whatever
        the training targets are."""
        if self.target_key in info.targets:
            return batch[self.target_key]
        return boundary_map(batch[self.labels][:, None])

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        o = options or EvalConfig()
        return EdgeMetrics(o.edge_tolerance, o.edge_thresholds, o.edge_nms, matching=o.edge_matching)

    def colorize(self, prediction: Tensor) -> Tensor:
        return gray(prediction)

    def save(self, prediction: Tensor, stem: Path) -> Path:
        """Probability × 255 as a grey PNG ``{stem}_edge.png``."""
        return write_gray_png((prediction[0].cpu() * 255).round(), stem.with_name(f"{stem.name}_edge.png"))


@TASKS.register("edge", options={
    "thickness": Option(1, "half-width in pixels of training targets drawn from labels", at_least(1)),
    "targets": Option("both_sides", "training targets: both_sides of each label change, or one_side (BSDS)",
                      one_of(*EDGE_TARGETS)),
    "depth_edges": Option(0.0, "> 0: also mark depth discontinuities, |Sobel(log depth)| above this", at_least(0)),
})
def edge(info: DatasetInfo, thickness: int, targets: str, depth_edges: float) -> Task:
    """Edge detection: 1 logit channel, targets from label boundaries."""
    return EdgeTask("edge", 1, "edge", "balanced_bce", head="boundary", thickness=thickness, targets=targets,
                    depth_edges=depth_edges)
