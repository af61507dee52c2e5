"""NYU Depth V2: the labeled ``.mat`` (MATLAB v7.3 = HDF5), a fast prepared cache, the NYUD-MT
folders, and the official and random splits.

``prepare_nyuv2`` reads the labeled file one frame at a time with h5py, in the right
orientation, maps labels 894→40 (or 13), resizes, and writes a cache folder::

    DIR/labeled-256px-c40-filled/   image.npy (N×S×S×3 uint8)  depth.npy (N×S×S float32, metres)
                                    seg.npy (N×S×S uint8, 255 = ignore; uint16 with 65535 for 894)
                                    index.npy (N, 1-based NYU ids)  manifest.json (written last)

The folder is assembled under a temporary name and renamed once complete, so a folder with a
``manifest.json`` is always whole. Later runs memory-map the arrays.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.data.datasets import (
    SPLIT_OPTIONS,
    Arrays,
    DatasetSplits,
    DenseDataset,
    Preparer,
    PrepareResult,
    Scoring,
    carve_val,
    random_split,
    write_cache_atomically,
)
from mtlbench.data.normals import kinect_normals
from mtlbench.errors import MtlbenchError
from mtlbench.options import Option, at_least, one_of
from mtlbench.registry import DATASETS
from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS, DatasetInfo

FORMAT_VERSION = 2  # 2: surface normals, and the ground truth at the scored resolution
BLOCK = 16  # frames read and resized together
FRAMES = 1449
NYU_MAX_DEPTH = 10.0  # metres: the Kinect range every NYUv2 protocol caps and normalises depth at
HEIGHT, WIDTH = 480, 640
IGNORE = {13: 255, 40: 255, 894: 65535}
# the pixels of a 480×640 frame the NYUD protocols score (top, bottom, left, right; end exclusive):
# the 425×560 NYUD-MT frames, which leave out the white border the labeled frames carry
SCORE_CROP = (45, 470, 40, 600)
LABELED_FILE = "nyu_depth_v2_labeled.mat"
HINT_V73 = (f"mtlbench reads the MATLAB v7.3 labeled file {LABELED_FILE} (about 2.8 GB, HDF5) from "
            f"the NYU Depth V2 page")


def _resource_ints(name: str) -> np.ndarray:
    text = resources.files("mtlbench.resources").joinpath(name).read_text()
    return np.array([int(v) for v in text.split()], dtype=np.int64)


@cache
def label_lut(classes: int) -> np.ndarray:
    """Lookup table from raw labels (0 = unlabelled, 1..894) to 0-based ``classes`` ids + ignore."""
    if classes not in IGNORE:
        raise MtlbenchError(f"unsupported class set {classes}: choose 40, 13 or 894")
    map40 = _resource_ints("nyuv2_map894to40_1based.txt")  # 894 values in 1..40
    if classes == 894:
        lut = np.arange(-1, 894)
    elif classes == 40:
        lut = np.concatenate([[-1], map40 - 1])
    else:
        map13 = _resource_ints("nyuv2_map40to13_1based.txt")  # 40 values in 1..13
        lut = np.concatenate([[-1], map13[map40 - 1] - 1])
    lut[0] = IGNORE[classes]
    return lut.astype(np.uint16 if classes == 894 else np.uint8)


def map_labels(raw: np.ndarray, classes: int) -> np.ndarray:
    """Raw NYUv2 labels (0..894) → 0-based ids of ``classes`` with 255 (65535 for 894) ignored."""
    if raw.size and int(raw.max()) > 894:
        raise MtlbenchError(f"label {int(raw.max())} is outside NYUv2's 894 classes: is this the labeled file?")
    return label_lut(classes)[raw]


@cache
def class_names(classes: int) -> tuple[str, ...]:
    text = resources.files("mtlbench.resources").joinpath(f"nyuv2_names{classes}.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@cache
def official_split() -> tuple[np.ndarray, np.ndarray]:
    """Silberman et al.'s 795 train and 654 test frames, 1-based."""
    return _resource_ints("nyuv2_train_1based.txt"), _resource_ints("nyuv2_test_1based.txt")


def split_positions(index: np.ndarray, protocol: str, fractions: Sequence[float], seed: int,
                    val_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions into ``index`` (1-based NYU ids) of train, val and test.

    ``official``: the 654 test frames, and ``val_frames`` of the 795 train frames drawn with
    ``seed`` as validation. ``random``: the random split by ``fractions`` of *Beneath the Surface*.
    """
    if protocol == "random":
        return random_split(len(index), fractions, seed)
    if protocol != "official":
        raise MtlbenchError(f"unknown split {protocol!r}: choose official or random")
    train_ids, test_ids = official_split()
    pos = {int(v): i for i, v in enumerate(index)}
    missing = [int(v) for v in np.concatenate([train_ids, test_ids]) if int(v) not in pos]
    if missing:
        raise MtlbenchError(f"the official split needs frames this data lacks (e.g. {missing[:3]}): "
                            f"use data.options.protocol random for a partial dataset")
    train, val = carve_val(torch.tensor([pos[int(v)] for v in train_ids]), val_frames, seed)
    return train, val, torch.tensor([pos[int(v)] for v in test_ids]).sort().values


# -- resizing -----------------------------------------------------------------------------

def resize_frames(image: torch.Tensor, depth: torch.Tensor, seg: torch.Tensor,
                  size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames (B×H×W×3 uint8, B×H×W depth, B×H×W labels) to size×size: RGB bilinear
    (antialiased), labels nearest, depth averaged over valid pixels only, so that no invalid (0)
    pixel blends into a valid one; a pixel whose footprint is mostly invalid stays 0."""
    if size == 0 or tuple(image.shape[1:3]) == (size, size):
        return image, depth, seg
    out = (size, size)
    img = F.interpolate(image.permute(0, 3, 1, 2).float(), out, mode="bilinear", antialias=True, align_corners=False)
    img = img.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    d = depth.float()[:, None]
    valid = (d > 0).float()
    num = F.interpolate(d * valid, out, mode="bilinear", antialias=True, align_corners=False)
    den = F.interpolate(valid, out, mode="bilinear", antialias=True, align_corners=False)
    d_out = torch.where(den >= 0.5, num / den.clamp_min(1e-6), torch.zeros_like(num))[:, 0]
    s = F.interpolate(seg[:, None].float(), out, mode="nearest-exact")[:, 0].to(seg.dtype)
    return img.contiguous(), d_out, s


def frame_normals(depth: torch.Tensor) -> torch.Tensor:
    """Normals (B×H×W×3) of labeled depth frames; frames without valid depth skip the plane fits."""
    out = torch.zeros(*depth.shape, 3)
    has = (depth > 0).flatten(1).any(1)
    if bool(has.any()):
        out[has] = kinect_normals(depth[has].float())
    return out


# -- the labeled .mat -----------------------------------------------------------------------

class LabeledMat:
    """The labeled file opened for reading frame by frame; every check done on open.

    h5py sees MATLAB's axes reversed: ``images`` is (N, 3, W, H), depths and labels (N, W, H).
    """

    def __init__(self, path: Path, raw_depth: bool = False) -> None:
        import h5py  # lazy: only `data prepare` reads the .mat; runs on the cache never load libhdf5

        self.path = Path(path)
        if not self.path.is_file():
            raise MtlbenchError(f"{self.path} not found: pass the path of {LABELED_FILE}")
        with self.path.open("rb") as f:
            head = f.read(128)
        if not h5py.is_hdf5(str(self.path)):
            if head.startswith(b"MATLAB 5.0 MAT-file"):
                raise MtlbenchError(f"{self.path} is a MATLAB v5 .mat, not v7.3 (HDF5): {HINT_V73}")
            raise MtlbenchError(f"{self.path} is not an HDF5 file (truncated, corrupt or not a .mat): {HINT_V73}")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise MtlbenchError(f"{self.path} cannot be opened, it may be truncated or corrupt ({exc})") from None
        self.depth_key = "rawDepths" if raw_depth else "depths"
        try:
            self._check()
        except BaseException:
            self.file.close()
            raise

    def _check(self) -> None:
        keys = ("images", self.depth_key, "labels")
        missing = [k for k in keys if k not in self.file]
        if missing:
            raise MtlbenchError(f"{self.path} lacks {', '.join(missing)}: {HINT_V73}")
        images, depths, labels = (self.file[k] for k in keys)
        n = images.shape[0]
        expect = {"images": ((n, 3, WIDTH, HEIGHT), "u"), self.depth_key: ((n, WIDTH, HEIGHT), "f"),
                  "labels": ((n, WIDTH, HEIGHT), "u")}
        for key, (shape, kind) in expect.items():
            ds = self.file[key]
            if ds.shape != shape or ds.dtype.kind != kind:
                raise MtlbenchError(f"{self.path}: {key} is {ds.dtype}{list(ds.shape)}, expected "
                                    f"{'uint' if kind == 'u' else 'float'}{list(shape)} as in {LABELED_FILE}")
        if n < 1:
            raise MtlbenchError(f"{self.path} holds no frames")
        self.n = n
        self.images, self.depths, self.labels = images, depths, labels

    def frames(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``start:stop`` (0-based) as B×H×W×3 uint8, B×H×W float32 metres and B×H×W raw
        labels (0..894); views with MATLAB's axes undone, not copies."""
        try:
            image = self.images[start:stop].transpose(0, 3, 2, 1)
            depth = self.depths[start:stop].transpose(0, 2, 1)
            labels = self.labels[start:stop].transpose(0, 2, 1)
        except OSError as exc:
            raise MtlbenchError(f"{self.path}: frames {start + 1}..{stop} cannot be read, the file may be "
                                f"truncated or corrupt ({exc})") from None
        return image, depth.astype(np.float32, copy=False), labels

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> LabeledMat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def variant_name(size: int, classes: int, raw_depth: bool) -> str:
    return f"labeled-{f'{size}px' if size else 'native'}-c{classes}-{'raw' if raw_depth else 'filled'}"


def file_digest(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _source_stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def prepare_nyuv2(mat: str | Path, out: str | Path, size: int = 256, classes: int = 40, raw_depth: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> PrepareResult:
    """Prepare the cache of one (size, classes, depth) variant from the labeled file.

    Re-running on a complete cache of the same source does nothing; a cache of an older format
    is rebuilt. Raises :class:`MtlbenchError` on any bad input, leaving nothing behind.
    """
    mat, out = Path(mat).expanduser(), Path(out).expanduser()
    if size < 0 or (size and size < 32):
        raise MtlbenchError(f"size must be 0 (native 480x640) or at least 32, got {size}")
    label_lut(classes)
    folder = out / variant_name(size, classes, raw_depth)
    with LabeledMat(mat, raw_depth) as src:
        stamp = _source_stamp(mat)
        old = _read_manifest(folder)
        if old and old.get("format") == FORMAT_VERSION and {k: old["source"].get(k) for k in stamp} == stamp:
            return PrepareResult(folder, False)
        n = src.n
        h, w = (size, size) if size else (HEIGHT, WIDTH)
        seg_dtype = np.uint16 if classes == 894 else np.uint8

        top, bottom, left, right = SCORE_CROP
        ch, cw = bottom - top, right - left
        # only the official test frames are ever scored at 425×560: their ground truth alone, in file order
        test_ids = set(official_split()[1].tolist())
        scored = [i for i in range(n) if i + 1 in test_ids]
        slot = {i: k for k, i in enumerate(scored)}

        def write(tmp: Path) -> None:
            mm = {
                "image": np.lib.format.open_memmap(tmp / "image.npy", "w+", np.uint8, (n, h, w, 3)),
                "depth": np.lib.format.open_memmap(tmp / "depth.npy", "w+", np.float32, (n, h, w)),
                "seg": np.lib.format.open_memmap(tmp / "seg.npy", "w+", seg_dtype, (n, h, w)),
                "normals": np.lib.format.open_memmap(tmp / "normals.npy", "w+", np.float16, (n, h, w, 3)),
            }
            if size:  # the native variant's own arrays hold the scored pixels
                (tmp / "score").mkdir()
                k = len(scored)
                mm.update({
                    "score_depth": np.lib.format.open_memmap(tmp / "score/depth.npy", "w+", np.float32, (k, ch, cw)),
                    "score_seg": np.lib.format.open_memmap(tmp / "score/seg.npy", "w+", seg_dtype, (k, ch, cw)),
                    "score_normals": np.lib.format.open_memmap(tmp / "score/normals.npy", "w+", np.float16,
                                                               (k, ch, cw, 3)),
                })
            for start in range(0, n, BLOCK):
                stop = min(n, start + BLOCK)
                image, depth, raw = src.frames(start, stop)
                depth_t = torch.from_numpy(np.ascontiguousarray(depth))
                seg_t = torch.from_numpy(map_labels(raw, classes))
                normals = frame_normals(depth_t)  # at the native resolution, then resized like depth
                block = resize_frames(torch.from_numpy(image), depth_t, seg_t, size)
                for key, value in zip(("image", "depth", "seg"), block):
                    mm[key][start:stop] = value.numpy()
                small = resize_normals(normals, size).numpy()
                # frames without depth stay unwritten zeros: the files are created sparse
                has_depth = (depth_t > 0).flatten(1).any(1).tolist()
                for j, i in enumerate(range(start, stop)):
                    if has_depth[j]:
                        mm["normals"][i] = small[j]
                    if size and i in slot:
                        k = slot[i]
                        mm["score_seg"][k] = seg_t[j, top:bottom, left:right].numpy()
                        if has_depth[j]:
                            mm["score_depth"][k] = depth_t[j, top:bottom, left:right].numpy()
                            mm["score_normals"][k] = normals[j, top:bottom, left:right].numpy()
                if progress:
                    progress(stop, n)
            for m in mm.values():
                m.flush()
            del mm
            np.save(tmp / "index.npy", np.arange(1, n + 1, dtype=np.int64))
            train, test = official_split()
            manifest = {
                "format": FORMAT_VERSION,
                "source": {**stamp, "sha256": file_digest(mat), "file": mat.name},
                "frames": n,
                "shape": {"image": [n, h, w, 3], "depth": [n, h, w], "seg": [n, h, w], "normals": [n, h, w, 3]},
                "score": {"frame": [HEIGHT, WIDTH], "crop": list(SCORE_CROP), "frames": len(scored)},
                "classes": classes,
                "ignore_index": IGNORE[classes],
                "class_names": list(class_names(classes)),
                "depth": src.depth_key,
                "preprocessing": {
                    "orientation": "images[i].transpose(2, 1, 0); depths[i].T; labels[i].T",
                    "resize": (f"{h}x{w}: RGB bilinear antialiased, labels nearest, depth averaged over "
                               f"valid pixels (0 where under half the footprint is valid)") if size else "none",
                    "labels": f"894 -> {classes} (0-based), 0 -> {IGNORE[classes]}",
                    "normals": f"from {src.depth_key} at 480x640 (mtlbench.data.normals.normals_from_depth, Kinect "
                               f"intrinsics), resized like depth",
                },
                "splits": {"official_train_1based": train.tolist(), "official_test_1based": test.tolist()},
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))

        try:
            # an older format or another source is replaced whole, once the new one is complete
            write_cache_atomically(folder, write, replace=old is not None or folder.exists())
        except OSError as exc:
            what = "no space left on the device" if exc.errno == errno.ENOSPC else str(exc)
            raise MtlbenchError(f"cannot write the cache under {out}: {what}; nothing was kept, "
                                f"free space or choose another folder") from None
    return PrepareResult(folder, True)


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def load_cache(root: Path, size: int, classes: int, raw_depth: bool) -> tuple[Arrays, dict, Scoring | None]:
    """The arrays of a prepared variant, memory-mapped, and the ground truth of the official test
    frames at the scored resolution, in file order (``None`` where the file lacks some of them)."""
    folder = root / variant_name(size, classes, raw_depth)
    prepare = (f"mtlbench data prepare nyuv2 --mat {LABELED_FILE} --out {root} --size {size} --classes {classes}"
               + (" --raw-depth" if raw_depth else ""))
    if not root.is_dir():
        raise MtlbenchError(f"NYUv2 data.root {root} not found: prepare it with `{prepare}`")
    manifest = _read_manifest(folder)
    if manifest is None:
        have = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())
        listed = f" (it holds {', '.join(have)})" if have else ""
        raise MtlbenchError(f"no prepared NYUv2 {variant_name(size, classes, raw_depth)} under {root}{listed}: "
                            f"run `{prepare}`")
    if manifest.get("format") != FORMAT_VERSION:
        raise MtlbenchError(f"the cache {folder} has format {manifest.get('format')}, this mtlbench reads "
                            f"{FORMAT_VERSION}: rebuild it with `{prepare}`")
    # copy-on-write maps: tensors may be written in memory, the cache on disk never is
    def load(name: str) -> torch.Tensor:
        return torch.from_numpy(np.load(folder / f"{name}.npy", mmap_mode="c"))

    arrays = Arrays(load("image"), torch.from_numpy(np.load(folder / "index.npy")),
                    {"depth": load("depth"), "seg": load("seg"), "normals": load("normals")})
    top, bottom, left, right = SCORE_CROP
    test = torch.from_numpy(np.isin(arrays.index.numpy(), official_split()[1])).nonzero()[:, 0]
    if len(test) != len(official_split()[1]):
        return arrays, manifest, None
    if size:
        truth = Scoring({k: load(f"score/{k}") for k in ("depth", "seg", "normals")})
    else:
        window = (test, slice(top, bottom), slice(left, right))
        truth = Scoring({k: t[window] for k, t in arrays.targets.items()})
    scoring = replace(truth, frame=(HEIGHT, WIDTH), crop=SCORE_CROP,
                      note=f"inside rows {top}:{bottom}, columns {left}:{right} of the 480×640 frames (the NYUD-MT "
                           f"frame, without the white border)")
    return arrays, manifest, scoring


def _splits(arrays: Arrays, scoring: Scoring | None, info: DatasetInfo, protocol: str, fractions: Sequence[float],
            split_seed: int, val_frames: int, source: str) -> DatasetSplits:
    parts = split_positions(arrays.index.numpy(), protocol, fractions, split_seed, val_frames)
    train, val = (DenseDataset(arrays.take(p), info) for p in parts[:2])
    # (the official test positions are ascending, the order the scored ground truth is kept in)
    test = DenseDataset(arrays.take(parts[2]), info, scoring)
    return DatasetSplits(train, val, test, info=info, source=source)


VAL_FRAMES = Option(80, "official split: validation frames carved from train", at_least(1))


def _prepare(source: Path, out: Path, progress: Callable[[int, int], None] | None, *, size: int, classes: int,
             raw_depth: bool) -> PrepareResult:
    return prepare_nyuv2(source, out, size, classes, raw_depth, progress)


PREPARE = Preparer(_prepare, f"{LABELED_FILE} (MATLAB v7.3)", {
    "size": Option(256, "square side in pixels; 0 keeps 480x640", at_least(0)),
    "classes": Option(40, "class set: 40, 13 or 894", one_of(40, 13, 894)),
    "raw_depth": Option(False, "rawDepths with holes (0) instead of the in-painted depths"),
})


@DATASETS.register("nyuv2", options={
    "protocol": Option("random", "random: by fractions (as Beneath the Surface splits); official: NYUv2's "
                       "795/654", one_of("random", "official")),
    **SPLIT_OPTIONS,
    "val_frames": VAL_FRAMES,
    "classes": Option(40, "class set: 40, 13 or 894", one_of(40, 13, 894)),
    "raw_depth": Option(False, "rawDepths (holes = 0) instead of the in-painted depths"),
}, prepare=PREPARE)
def nyuv2(root: str, size: int, progress: Callable[[int, int], None] | None = None, *, protocol: str,
          fractions: Sequence[float], split_seed: int, val_frames: int, classes: int, raw_depth: bool) -> DatasetSplits:
    """NYU Depth V2 labeled set (1449 frames) from a cache made by `mtlbench data prepare nyuv2`."""
    if not root:
        raise MtlbenchError(f"dataset nyuv2 needs data.root, a folder made by "
                            f"`mtlbench data prepare nyuv2 --mat {LABELED_FILE} --out DIR`")
    arrays, manifest, scoring = load_cache(Path(root).expanduser(), size, classes, raw_depth)
    info = DatasetInfo(num_classes=classes, max_depth=NYU_MAX_DEPTH, class_names=class_names(classes),
                       ignore_index=IGNORE[classes], targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})
    # the NYUD-MT protocols score at 425×560; the paper's scores its own 256×256 frames as they are,
    # and the 13-class (MTAN) frames are not reproduced here
    native = protocol == "official" and classes == 40
    return _splits(arrays, scoring if native else None, info, protocol, fractions, split_seed, val_frames,
                   f"nyuv2 {manifest['frames']} frames, {manifest['depth']}, split {protocol} ({root})")


def resize_normals(normals: torch.Tensor, size: int) -> torch.Tensor:
    """Normals (B×H×W×3, zero = invalid) to size×size: valid vectors averaged over each output
    pixel's footprint and made unit again; invalid where under half the footprint is valid."""
    if size == 0 or tuple(normals.shape[1:3]) == (size, size):
        return normals
    n = normals.float().permute(0, 3, 1, 2)
    valid = (n.square().sum(1, keepdim=True) > 0.25).float()
    num = F.interpolate(n * valid, (size, size), mode="bilinear", antialias=True, align_corners=False)
    den = F.interpolate(valid, (size, size), mode="bilinear", antialias=True, align_corners=False)
    out = torch.where(den >= 0.5, F.normalize(num, dim=1, eps=1e-6), torch.zeros_like(num))
    return out.permute(0, 2, 3, 1).contiguous()
