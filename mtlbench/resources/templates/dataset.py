"""my_plugin: an mtlbench dataset (``--data my_plugin``).

Without ``--data-root`` it draws its own frames: a wall above a floor that recedes to it, and boxes
standing in front, with exact depth and three classes. With ``--data-root DIR`` it reads
``DIR/*.npz`` instead, each holding ``image`` (H×W×3 uint8), ``depth`` (H×W float32 metres,
0 = invalid) and ``seg`` (H×W uint8, 255 = unlabelled). Replace :func:`draw` or :func:`read` with
your data and keep that format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.api import (
    DATASETS,
    RGBD_TARGETS,
    Arrays,
    DatasetInfo,
    DatasetSplits,
    DenseDataset,
    MtlbenchError,
    Option,
    at_least,
)

MTLBENCH_API = "2"

CLASSES = ("wall", "floor", "box")
MAX_DEPTH = 10.0  # metres: this dataset's depth range, which depth heads and losses scale to [0, 1]


def draw(frames: int, size: int, max_depth: float, seed: int) -> dict[str, np.ndarray]:
    """``frames`` frames of size×size: a wall at a random distance, a floor from the horizon down
    (at the wall's distance there, nearer below), one or two boxes in front."""
    rng = np.random.default_rng(seed)
    rows = np.repeat((np.arange(size)[:, None] + 0.5) / size, size, axis=1)
    cols = rows.T
    out = {"image": np.empty((frames, size, size, 3), np.uint8), "depth": np.empty((frames, size, size), np.float32),
           "seg": np.empty((frames, size, size), np.uint8)}
    for i in range(frames):
        wall, horizon = rng.uniform(0.5, 0.9) * max_depth, rng.uniform(0.3, 0.6)
        depth = np.where(rows < horizon, wall, wall * horizon / rows)
        seg = np.where(rows < horizon, 0, 1)
        for _ in range(rng.integers(1, 3)):
            top, left, height, width = rng.uniform(0.2, 0.6, 2).tolist() + rng.uniform(0.15, 0.35, 2).tolist()
            inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
            depth = np.where(inside, rng.uniform(0.2, 0.45) * max_depth, depth)
            seg = np.where(inside, 2, seg)
        colours = rng.uniform(40, 215, (len(CLASSES), 3))
        shade = 1.0 - 0.5 * depth / max_depth  # nearer is brighter
        noise = rng.normal(0, 4, (size, size, 3))
        out["image"][i] = np.clip(colours[seg] * shade[..., None] + noise, 0, 255)
        out["depth"][i], out["seg"][i] = depth, seg
    return out


def read(root: Path, size: int) -> dict[str, np.ndarray]:
    """The frames ``root/*.npz`` in name order, resized to size×size (depth and labels nearest, so
    that none is invented between two)."""
    files = sorted(root.glob("*.npz"))
    if not files:
        raise MtlbenchError(f"no *.npz frames in {root}: each holds image, depth and seg")
    out: dict[str, list[np.ndarray]] = {"image": [], "depth": [], "seg": []}
    for path in files:
        with np.load(path) as frame:
            image = torch.from_numpy(frame["image"]).permute(2, 0, 1)[None].float()
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out["image"].append(image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
            for key in ("depth", "seg"):
                t = torch.from_numpy(frame[key].astype(np.float32))[None, None]
                out[key].append(F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy())
    return {"image": np.stack(out["image"]), "depth": np.stack(out["depth"]).astype(np.float32),
            "seg": np.stack(out["seg"]).astype(np.uint8)}


def my_plugin(
    root: str, size: int, progress: Callable[[int, int], None] | None = None, *, frames: int = 48, seed: int = 0,
) -> DatasetSplits:
    """my_plugin: boxes before a wall, or the frames of data.root (mtlbench plugin template)."""
    data = read(Path(root).expanduser(), size) if root else draw(frames, size, MAX_DEPTH, seed)
    n = len(data["image"])
    if n < 3:
        raise MtlbenchError(f"my_plugin has {n} frames: train, val and test need 3 or more")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = max(1, n // 10)  # val and test each
    parts = order[2 * held:], order[:held], order[held:2 * held]
    targets = {key: torch.from_numpy(data[key]) for key in ("depth", "seg")}
    arrays = Arrays(torch.from_numpy(data["image"]), torch.arange(1, n + 1), targets)
    info = DatasetInfo(num_classes=len(CLASSES), max_depth=MAX_DEPTH, class_names=CLASSES,
                       targets=dict(RGBD_TARGETS))
    train, val, test = (DenseDataset(arrays.take(p.sort().values), info) for p in parts)
    return DatasetSplits(train, val, test, info=info, source=f"my_plugin ({root or f'{n} frames drawn'})")


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    options = {"frames": Option(48, "frames drawn (without data.root)", at_least(3)),
               "seed": Option(0, "seed of the frames and of the split", at_least(0))}
    DATASETS.register("my_plugin", options=options)(my_plugin)
