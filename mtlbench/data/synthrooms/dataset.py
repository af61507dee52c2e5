"""The synthrooms dataset: procedural rooms rendered once per configuration into a cache, split
at random. The built-in default; it needs no download."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mtlbench.data.datasets import (
    SPLIT_OPTIONS,
    Arrays,
    DatasetSplits,
    DenseDataset,
    check_nonempty,
    default_cache_root,
    random_split,
    split_sizes,
    write_cache_atomically,
)
from mtlbench.data.synthrooms.frames import render_batch
from mtlbench.errors import MtlbenchError
from mtlbench.options import Option, at_least, one_of, positive
from mtlbench.registry import DATASETS
from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS, DatasetInfo

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
                                f"set data.root or MTLBENCH_CACHE to a writable folder") from None
    loaded = {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in ("image", "depth", "seg", "normals")}
    return Arrays(loaded["image"], torch.arange(1, frames + 1),
                  {"depth": loaded["depth"], "seg": loaded["seg"], "normals": loaded["normals"]})



@DATASETS.register("synthrooms", options={
    "frames": Option(1449, "frames rendered", at_least(1)),
    "protocol": Option("random", "split protocol: random (by fractions) is the only one", one_of("random")),
    **SPLIT_OPTIONS,
    "scene_seed": Option(0, "seed of the procedural scenes", at_least(0)),
    "holes": Option(False, "Kinect-like depth holes"),
    "max_depth": Option(10.0, "metres: the depth range (farther is clipped), mapped to 1.0 by depth heads",
                        positive),
})
def synthrooms(root: str, size: int, progress: Callable[[int, int], None] | None = None, *, frames: int,
               protocol: str, fractions: Sequence[float], split_seed: int, scene_seed: int, holes: bool,
               max_depth: float) -> DatasetSplits:
    """Procedural indoor rooms with exact metric depth and NYU-40 labels; no download needed."""
    check_nonempty(split_sizes(frames, fractions))  # before rendering anything
    cache = Path(root).expanduser() if root else default_cache_root()
    arrays = synthrooms_arrays(cache, scene_seed, frames, size, holes, max_depth, progress)
    info = DatasetInfo(num_classes=40, max_depth=max_depth, targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})
    parts = random_split(frames, fractions, split_seed)
    train, val, test = (DenseDataset(arrays.take(p), info) for p in parts)
    return DatasetSplits(train, val, test, info=info, source=f"synthrooms ({frames} frames, cache {cache})")
