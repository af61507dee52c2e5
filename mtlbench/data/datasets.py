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

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from kornia.enhance import equalize_clahe
from torch import Tensor

from mtlbench.errors import MtlbenchError
from mtlbench.options import Option, at_least, declare_options, resolve_options
from mtlbench.registry import DATASETS
from mtlbench.tasks.base import DatasetInfo

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
    """Train/val/test sizes of :func:`random_split`."""
    n_val, n_test = int(n * fractions[1]), int(n * fractions[2])
    return n - n_val - n_test, n_val, n_test


def check_nonempty(sizes: Sequence[int]) -> None:
    """One clear error when a split would hold no frame."""
    empty = [s for s, k in zip(SPLITS, sizes) if k == 0]
    if empty:
        raise MtlbenchError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                            f"({'/'.join(map(str, sizes))} frames): use more frames or other split fractions")


def random_split(n: int, fractions: Sequence[float], seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A random train/val/test partition of ``range(n)`` (the 80/10/10 protocol of *Beneath the
    Surface*).

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
        raise MtlbenchError(f"data.options.val_frames must lie in 1..{len(train) - 1}, got {val_frames}")
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
    "fractions": Option([0.8, 0.1, 0.1], "train/val/test fractions of the random split", fractions_check),
    "split_seed": Option(0, "seed of the random split", at_least(0)),
}


def build_splits(name: str, root: str = "", size: int = 256, progress: Callable[[int, int], None] | None = None,
                 **options: Any) -> DatasetSplits:
    """All three splits of a registered dataset; ``options`` are checked against what it declares
    (``mtlbench list datasets``), the rest take their defaults."""
    entry = DATASETS.entry(name)
    resolved = resolve_options(f"dataset {name}", entry.options, options, "options")
    return entry.obj(root, size, progress, **resolved)


@dataclass
class PrepareResult:
    folder: Path
    written: bool  # False: a complete cache was already there


@dataclass(frozen=True)
class Preparer:
    """A dataset's one-off preparation (``DATASETS.register(..., prepare=Preparer(...))``): read the
    originals once and write the cache its factory then reads from ``data.root``.

    Args:
        run: ``run(source, out, progress, **options) -> PrepareResult``; re-running on a complete
            cache does nothing, and a failure leaves nothing that looks complete.
        source: what the source is (a file or folder), for help and errors.
        options: what it declares, as dataset options are declared.
    """

    run: Callable[..., PrepareResult]
    source: str
    options: Mapping[str, Option] = field(default_factory=dict)


def preparable() -> list[str]:
    """The registered datasets that have a prepare step."""
    return [e.name for e in DATASETS.entries() if e.meta.get("prepare") is not None]


def prepare_dataset(name: str, source: str | Path, out: str | Path,
                    progress: Callable[[int, int], None] | None = None, **options: Any) -> PrepareResult:
    """Run dataset ``name``'s prepare step; ``options`` are checked against what it declares."""
    preparer = DATASETS.entry(name).meta.get("prepare")
    if preparer is None:
        raise MtlbenchError(f"dataset {name} has nothing to prepare (it reads its data.root as it is, or makes its "
                            f"own cache); datasets with a prepare step: {', '.join(preparable()) or 'none'}")
    resolved = resolve_options(f"dataset {name} preparation", declare_options(preparer.options), options, "options")
    return preparer.run(Path(source).expanduser(), Path(out).expanduser(), progress, **resolved)


def build_dataset(name: str, split: str = "train", **options: Any) -> DenseDataset:
    """One split of a registered dataset, e.g. ``build_dataset("synthrooms", split="test", size=128)``."""
    if split not in SPLITS:
        raise MtlbenchError(f"split {split!r}: choose from {', '.join(SPLITS)}")
    return build_splits(name, **options)[split]
