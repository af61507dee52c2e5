"""Datasets as in-memory arrays, split once, batched by indexing.

A frame is an image, a 1-based index and the targets the dataset provides, each stored as the
dataset's ``DatasetInfo.targets`` declares (:class:`mtlbench.tasks.base.Target`): for indoor
RGB-D frames depth (metres, 0 = invalid), seg (labels, the ignore label for none) and, where the
dataset has them, normals and its own edge maps.

Training does not go through per-sample ``__getitem__``: :meth:`DenseDataset.batch` slices
whole batches from the arrays and :class:`mtlbench.data.pipeline.BatchPipeline` does the
per-pixel work (augmentation, normalisation, derived targets) on the training device.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import equalize_clahe
from torch import Tensor

from mtlbench.data.synthrooms import render_batch
from mtlbench.errors import MtlbenchError
from mtlbench.options import Option, at_least, one_of, resolve_options
from mtlbench.registry import DATASETS
from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS, DatasetInfo

SPLITS = ("train", "val", "test")


class _Frames:
    """Per-frame tensors (``image``, ``index`` and a dict of ``targets``), sliced and moved together.

    A target reads as an attribute too (``arrays.depth``), for code and tests that know the key.
    """

    targets: dict[str, Tensor]

    def __getattr__(self, key: str) -> Tensor:
        targets = self.__dict__.get("targets", {})
        if key in targets:
            return targets[key]
        raise AttributeError(f"{type(self).__name__} has no {key!r} (targets: {', '.join(targets) or 'none'})")

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: t for f in fields(self) if isinstance(t := getattr(self, f.name), Tensor)}  # type: ignore[arg-type]

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Any:
        return replace(self, **{k: fn(t) for k, t in self._tensors().items()},  # type: ignore[type-var]
                       targets={k: fn(t) for k, t in self.targets.items()})

    def take(self, idx: Tensor | Sequence[int]) -> Any:
        """A copy holding frames ``idx`` (other fields kept)."""
        first = next(iter({**self._tensors(), **self.targets}.values()))
        idx = torch.as_tensor(idx, dtype=torch.long, device=first.device)
        return self._map(lambda t: t[idx])

    def to(self, device: torch.device | str) -> Any:
        return self._map(lambda t: t.to(device))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self._tensors().values(), *self.targets.values()])


@dataclass
class Arrays(_Frames):
    """One split: N frames of uint8 RGB (N×H×W×3), 1-based ids (N int64) and the targets the
    dataset provides, each stored as its ``DatasetInfo.targets`` entry says (N×H×W or N×H×W×C)."""

    image: Tensor
    index: Tensor
    targets: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class Scoring(_Frames):
    """The ground truth a published protocol scores at, for the frames of one split.

    Predictions, made at the training resolution, are resized (bilinear, on the raw head
    outputs) to ``frame`` and cut to ``crop`` before they meet these targets: NYUD-MT's own
    425×560 frames, or the official 480×640 frames less their white border.

    Attributes:
        targets: N×h×w (or N×h×w×C) ground truth inside the crop (h, w its size), stored as in
            :class:`Arrays`; targets a task draws from others (edges from labels) are drawn by
            the task (:meth:`mtlbench.tasks.base.Task.score_target`).
        frame: (H, W) of the whole original frame.
        crop: (top, bottom, left, right) rows and columns of ``frame`` scored, end exclusive.
        note: what was scored, for the run header and ``metrics.json``.
    """

    targets: dict[str, Tensor] = field(default_factory=dict)
    frame: tuple[int, int] = (0, 0)
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    note: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.crop[1] - self.crop[0], self.crop[3] - self.crop[2]

    def resize(self, output: Tensor) -> Tensor:
        """A raw head output (B×C×h×w at the input resolution) at the scored pixels, B×C×crop."""
        top, bottom, left, right = self.crop
        up = F.interpolate(output.float(), size=self.frame, mode="bilinear", align_corners=False)
        return up[..., top:bottom, left:right]

    def batch(self, idx: Tensor, device: torch.device, info: DatasetInfo) -> dict[str, Tensor]:
        """The stored targets of frames ``idx`` (positions in the split) as batches hold them."""
        part = self.take(idx).to(device)
        return {k: info.targets[k].to_batch(t) for k, t in part.targets.items()}


class DenseDataset(torch.utils.data.Dataset):
    """One split of a dataset, held in memory.

    Args:
        arrays: the frames of the split.
        info: class count, maximum depth, class names, the targets the frames carry.
        scoring: the ground truth a published protocol scores these frames at, where it differs
            from ``arrays`` (another resolution or crop); ``None``: scored as they are.
    """

    def __init__(self, arrays: Arrays, info: DatasetInfo, scoring: Scoring | None = None) -> None:
        missing = sorted(set(info.targets) - set(arrays.targets))
        extra = sorted(set(arrays.targets) - set(info.targets))
        if missing or extra:
            raise MtlbenchError(f"the frames' targets ({', '.join(arrays.targets) or 'none'}) are not the ones "
                                f"DatasetInfo.targets declares ({', '.join(info.targets) or 'none'})")
        self.arrays = arrays
        self.info = info
        self.scoring = scoring

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def device(self) -> torch.device:
        """Where the frames are held (the GPU when they fit there)."""
        return self.arrays.image.device

    def batch(self, idx: Tensor | Sequence[int]) -> dict[str, Tensor]:
        """Raw stacked frames: uint8 image B×H×W×3, index B and each target as stored."""
        a = self.arrays.take(idx)
        return {"image": a.image, **a.targets, "index": a.index}

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        """One frame: image 3×H×W float in [0, 1], each target as batches hold it (less the
        batch dimension) and the int index. Derived targets (edges) are the pipeline's."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a split of {len(self)} frames")
        a = self.arrays
        out: dict[str, Tensor | int] = {"image": a.image[i].permute(2, 0, 1).float() / 255.0}
        for key, t in a.targets.items():
            out[key] = self.info.targets[key].to_batch(t[i:i + 1])[0].clone()
        out["index"] = int(a.index[i])
        return out


@dataclass
class DatasetSplits:
    train: DenseDataset
    val: DenseDataset
    test: DenseDataset
    info: DatasetInfo
    source: str  # where the frames came from, for the run header
    depth_zoom: bool = False  # the dataset's protocol divides depth by a training crop's zoom

    def __getitem__(self, split: str) -> DenseDataset:
        if split not in SPLITS:
            raise MtlbenchError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}")
        return getattr(self, split)


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Train/val/test sizes of :func:`seed_split`."""
    n_val, n_test = int(n * fractions[1]), int(n * fractions[2])
    return n - n_val - n_test, n_val, n_test


def check_nonempty(sizes: Sequence[int]) -> None:
    """One clear error when a split would hold no frame."""
    empty = [s for s, k in zip(SPLITS, sizes) if k == 0]
    if empty:
        raise MtlbenchError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                            f"({'/'.join(map(str, sizes))} frames): use more frames or other split fractions")


def seed_split(n: int, fractions: Sequence[float], seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A random train/val/test partition of ``range(n)`` (the seed paper's 80/10/10 protocol).

    Sizes round down for val and test; train takes the remainder. Each part is sorted.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val, n_test = split_sizes(n, fractions)
    parts = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    train, val, test = (p.sort().values for p in parts)
    return train, val, test


def carve_val(train: Tensor, val_frames: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``val_frames`` positions off ``train`` at random (fixed ``seed``); both sorted."""
    if not 0 < val_frames < len(train):
        raise MtlbenchError(f"val_frames must lie in 1..{len(train) - 1}, got {val_frames}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train[perm[val_frames:]].sort().values, train[perm[:val_frames]].sort().values


def default_cache_root() -> Path:
    return Path(os.environ.get("MTLBENCH_CACHE", Path.home() / ".cache" / "mtlbench"))


def write_cache_atomically(target: Path, write: Callable[[Path], None], replace: bool = False) -> None:
    """Call ``write(tmp_dir)`` and move the folder to ``target`` only once it is complete.

    With ``replace``, an existing ``target`` is swapped out after the new folder is complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old = target.parent / f".{target.name}.old"
    try:
        write(tmp)
        if replace and target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same cache first
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


SYNTHROOMS_FORMAT = 2  # 2: exact surface normals


def _render_all(seed: int, frames: int, size: int, holes: bool, max_depth: float,
                progress: Callable[[int], None] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "image": np.empty((frames, size, size, 3), np.uint8),
        "depth": np.empty((frames, size, size), np.float32),
        "normals": np.empty((frames, size, size, 3), np.float16),  # half: 0.03° at most, half the memory
        "seg": np.empty((frames, size, size), np.uint8),
    }
    chunk = 32
    for start in range(0, frames, chunk):
        idx = list(range(start, min(frames, start + chunk)))
        batch = render_batch(seed, idx, size, holes=holes, max_depth=max_depth)
        for k in out:
            out[k][idx[0]:idx[-1] + 1] = batch[k]
        if progress:
            progress(len(idx))
    return out


def synthrooms_arrays(root: Path, seed: int, frames: int, size: int, holes: bool, max_depth: float,
                      progress: Callable[[int, int], None] | None = None) -> Arrays:
    """All frames of a synthrooms configuration, rendered once and cached under ``root``."""
    key = f"v{SYNTHROOMS_FORMAT}-seed{seed}-n{frames}-{size}px-holes{int(holes)}-max{max_depth:g}"
    folder = root / "synthrooms" / key
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        def write(tmp: Path) -> None:
            done = 0

            def tick(n: int) -> None:
                nonlocal done
                done += n
                if progress:
                    progress(done, frames)

            arrays = _render_all(seed, frames, size, holes, max_depth, tick)
            sums = {}
            for k, v in arrays.items():
                np.save(tmp / f"{k}.npy", v)
                sums[k] = hashlib.sha256(v.tobytes()).hexdigest()
            meta = {"format": SYNTHROOMS_FORMAT, "seed": seed, "frames": frames, "size": size,
                    "holes": holes, "max_depth": max_depth, "sha256": sums}
            (tmp / "manifest.json").write_text(json.dumps(meta, indent=1))

        try:
            write_cache_atomically(folder, write)
        except OSError as exc:
            raise MtlbenchError(f"cannot write the synthrooms cache under {root}: {exc}; "
                                f"set --data-root or MTLBENCH_CACHE to a writable folder") from None
    loaded = {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in ("image", "depth", "seg", "normals")}
    return Arrays(loaded["image"], torch.arange(1, frames + 1),
                  {"depth": loaded["depth"], "seg": loaded["seg"], "normals": loaded["normals"]})


def apply_clahe(images: Tensor, clip: float, device: torch.device | str = "cpu",
                chunk: int = 64) -> Tensor:
    """CLAHE (kornia, 8×8 tiles) on N×H×W×3 uint8 frames, computed in chunks on ``device``."""
    out = torch.empty_like(images)
    for s in range(0, images.shape[0], chunk):
        x = images[s:s + chunk].to(device).permute(0, 3, 1, 2).float() / 255.0
        y = equalize_clahe(x, clip_limit=clip, grid_size=(8, 8))
        out[s:s + chunk] = (y * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return out


def fractions_check(v: Sequence[float]) -> str | None:
    ok = len(v) == 3 and all(isinstance(f, (int, float)) and f >= 0 for f in v) and abs(sum(v) - 1) <= 1e-6
    return None if ok else f"must be three non-negative numbers (train/val/test) summing to 1, got {list(v)}"


# options every dataset with a seeded random split shares
SPLIT_OPTIONS = {
    "fractions": Option([0.8, 0.1, 0.1], "train/val/test fractions of the random (seed) split", fractions_check),
    "split_seed": Option(0, "seed of the random split", at_least(0)),
}


@DATASETS.register("synthrooms", options={
    "frames": Option(1449, "frames rendered", at_least(1)),
    "protocol": Option("seed", "split protocol: seed (random, by fractions) is the only one", one_of("seed")),
    **SPLIT_OPTIONS,
    "scene_seed": Option(0, "seed of the procedural scenes", at_least(0)),
    "holes": Option(False, "Kinect-like depth holes"),
})
def synthrooms(root: str, size: int, max_depth: float,
               progress: Callable[[int, int], None] | None = None, *, frames: int, protocol: str,
               fractions: Sequence[float], split_seed: int, scene_seed: int, holes: bool) -> DatasetSplits:
    """Procedural indoor rooms with exact metric depth and NYU-40 labels; no download needed."""
    check_nonempty(split_sizes(frames, fractions))  # before rendering anything
    cache = Path(root).expanduser() if root else default_cache_root()
    arrays = synthrooms_arrays(cache, scene_seed, frames, size, holes, max_depth, progress)
    info = DatasetInfo(num_classes=40, max_depth=max_depth, targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})
    parts = seed_split(frames, fractions, split_seed)
    train, val, test = (DenseDataset(arrays.take(p), info) for p in parts)
    return DatasetSplits(train, val, test, info=info, source=f"synthrooms ({frames} frames, cache {cache})")


def build_splits(name: str, root: str = "", size: int = 256, max_depth: float = 10.0,
                 progress: Callable[[int, int], None] | None = None, **options: Any) -> DatasetSplits:
    """All three splits of a registered dataset; ``options`` are checked against what it declares
    (``mtlbench list datasets``), the rest take their defaults."""
    entry = DATASETS.entry(name)
    resolved = resolve_options(f"dataset {name}", entry.options, options, "options")
    return entry.obj(root, size, max_depth, progress, **resolved)


def build_dataset(name: str, split: str = "train", **options: Any) -> DenseDataset:
    """One split of a registered dataset, e.g. ``build_dataset("synthrooms", split="test", size=128)``."""
    if split not in SPLITS:
        raise MtlbenchError(f"split {split!r}: choose from {', '.join(SPLITS)}")
    return build_splits(name, **options)[split]
