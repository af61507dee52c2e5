"""The NYUD-MT folders of the MTI-Net / ATRC / InvPT code releases: the labeled NYUv2 frames as
image and label files, its train/val lists, and where present their normals and edge maps; the
test split is scored at the frames' own resolution, as those releases score it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.data.datasets import SPLIT_OPTIONS, Arrays, DatasetSplits, DenseDataset, Scoring, carve_val
from mtlbench.data.normals import read_nyud_mt_normals
from mtlbench.data.nyuv2 import NYU_MAX_DEPTH, VAL_FRAMES, class_names, resize_frames, resize_normals
from mtlbench.errors import MtlbenchError
from mtlbench.registry import DATASETS
from mtlbench.tasks.base import EDGE_TARGET, NORMALS_TARGET, RGBD_TARGETS, DatasetInfo


def _frame_id(stem: str, fallback: int) -> int:
    digits = "".join(ch for ch in stem if ch.isdigit())
    return int(digits) if digits else fallback


def resize_edges(edge: torch.Tensor, size: int) -> torch.Tensor:
    """Edge maps (B×H×W {0, 1}) to size×size: an output pixel is an edge where any pixel of its
    footprint is (a thin line survives downsampling)."""
    if size == 0 or tuple(edge.shape[1:3]) == (size, size):
        return edge
    return F.adaptive_max_pool2d(edge.float()[:, None], (size, size))[:, 0].to(edge.dtype)


NYUD_MT_FOLDERS = "images/, depth/, segmentation/, gt_sets/{train,val}.txt; optional normals/ and edge/"
# the ATRC release (NYUDv2.tar.gz) and the MTI-Net one (NYUD_MT.tgz) differ in file types only


def _nyud_mt_frame(root: Path, stem: str, optional: dict[str, bool]) -> dict[str, np.ndarray]:
    """One NYUD-MT frame at its own resolution: image, depth, labels (c + 1 → c, 0 → 255) and the
    normals and edges where the release has them."""
    from torchvision.io import ImageReadMode, read_image  # heavy: torchvision import ~2 s, only this reader

    paths = {"image": nyud_mt_file(root / "images", stem, (".jpg", ".png")), "depth": root / "depth" / f"{stem}.npy",
             "seg": root / "segmentation" / f"{stem}.png"}
    if optional["normals"]:
        paths["normals"] = nyud_mt_file(root / "normals", stem, (".npy", ".png"))
    if optional["edge"]:
        paths["edge"] = nyud_mt_file(root / "edge", stem, (".npy", ".png"))
    for p in paths.values():
        if not p.is_file():
            raise MtlbenchError(f"NYUD-MT frame {stem}: {p} not found")
    image = read_image(str(paths["image"]), ImageReadMode.RGB).permute(1, 2, 0).numpy()
    seg = read_image(str(paths["seg"]), ImageReadMode.UNCHANGED)[0].numpy()
    frame = {"image": image, "depth": np.load(paths["depth"]).astype(np.float32).squeeze(),
             "seg": np.where(seg == 0, 255, seg.astype(np.int64) - 1).astype(np.uint8)}
    if "normals" in paths:
        frame["normals"] = read_nyud_mt_normals(paths["normals"])
    if "edge" in paths:
        edge = (np.load(paths["edge"]) if paths["edge"].suffix == ".npy"
                else read_image(str(paths["edge"]), ImageReadMode.GRAY)[0].numpy())  # 0 / 255
        frame["edge"] = (np.asarray(edge).squeeze() > 0).astype(np.uint8)
    shapes = {k: v.shape[:2] for k, v in frame.items()}
    if len(set(shapes.values())) > 1:
        raise MtlbenchError(f"NYUD-MT frame {stem}: its maps differ in size "
                            f"({', '.join(f'{k} {h}x{w}' for k, (h, w) in shapes.items())})")
    return frame


def nyud_mt_file(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path:
    """The file of ``stem`` in ``folder`` with the first of ``suffixes`` that exists (the MTI-Net
    release has .jpg images and .npy edges and normals, the later ATRC release .png), else the
    first (named in the error)."""
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}{suffixes[0]}"


def read_nyud_mt(root: Path, size: int, progress: Callable[[int, int], None] | None = None
                 ) -> tuple[Arrays, dict[str, list[int]], Scoring]:
    """All frames listed in ``gt_sets/*.txt``, resized; returns the arrays, the positions of each
    list, and the ground truth of the ``val`` list (the test split) at its own resolution."""
    lists = {}
    for name in ("train", "val"):
        path = root / "gt_sets" / f"{name}.txt"
        if not path.is_file():
            raise MtlbenchError(f"{path} not found: {root} is not an NYUD-MT folder ({NYUD_MT_FOLDERS})")
        lists[name] = [s.strip() for s in path.read_text().splitlines() if s.strip()]
    stems = lists["train"] + lists["val"]
    optional = {k: (root / k).is_dir() for k in ("normals", "edge")}
    resized: dict[str, list[torch.Tensor]] = {}
    native: dict[str, list[torch.Tensor]] = {}
    ids = []
    for k, stem in enumerate(stems):
        frame = {key: torch.from_numpy(v)[None] for key, v in _nyud_mt_frame(root, stem, optional).items()}
        if k >= len(lists["train"]):
            for key in ("depth", "seg", "normals", "edge"):
                if key in frame:
                    native.setdefault(key, []).append(frame[key][0])
        image, depth, seg = resize_frames(frame["image"], frame["depth"], frame["seg"], size)
        small = {"image": image, "depth": depth, "seg": seg}
        if "normals" in frame:
            small["normals"] = resize_normals(frame["normals"], size).to(torch.float16)
        if "edge" in frame:
            small["edge"] = resize_edges(frame["edge"], size)
        for key, v in small.items():
            resized.setdefault(key, []).append(v[0])
        ids.append(_frame_id(stem, k + 1))
        if progress:
            progress(k + 1, len(stems))
    sizes = {tuple(d.shape) for d in native["depth"]}
    if len(sizes) > 1:
        raise MtlbenchError(f"NYUD-MT test frames differ in size ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))}): "
                            f"they are scored at their own resolution, which must be one")
    stacked = {k: torch.stack(v) for k, v in resized.items()}
    arrays = Arrays(stacked.pop("image"), torch.tensor(ids, dtype=torch.int64), stacked)
    truth = {k: torch.stack(v) for k, v in native.items()}
    h, w = truth["depth"].shape[-2:]
    scoring = Scoring(truth, frame=(h, w), crop=(0, h, 0, w),
                      note="NYUD-MT frames, whole" + ("" if optional["edge"] else "; edges from label boundaries"))
    n_train = len(lists["train"])
    return arrays, {"train": list(range(n_train)), "val": list(range(n_train, len(stems)))}, scoring


@DATASETS.register("nyud_mt", options={"split_seed": SPLIT_OPTIONS["split_seed"], "val_frames": VAL_FRAMES})
def nyud_mt(root: str, size: int, progress: Callable[[int, int], None] | None = None, *, split_seed: int,
            val_frames: int) -> DatasetSplits:
    """NYUD-MT folders of the MTI-Net code release: gt_sets/train.txt trains (val carved with a
    fixed seed), gt_sets/val.txt is the test split, as in that code; normals/ and edge/ are read
    where present, and the test split is scored at the frames' own resolution."""
    if not root:
        raise MtlbenchError(f"dataset nyud_mt needs data.root, the NYUD-MT folder ({NYUD_MT_FOLDERS})")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise MtlbenchError(f"data.root {folder} not found (dataset nyud_mt reads the NYUD-MT folder)")
    arrays, lists, scoring = read_nyud_mt(folder, size, progress)
    train, val = carve_val(torch.tensor(lists["train"]), val_frames, split_seed)
    kinds = {**RGBD_TARGETS, "normals": NORMALS_TARGET, "edge": EDGE_TARGET}
    info = DatasetInfo(num_classes=40, max_depth=NYU_MAX_DEPTH, class_names=class_names(40),
                       targets={k: kinds[k] for k in arrays.targets})
    train_ds, val_ds = (DenseDataset(arrays.take(p), info) for p in (train, val))
    test_ds = DenseDataset(arrays.take(torch.tensor(lists["val"])), info, scoring)
    return DatasetSplits(train_ds, val_ds, test_ds, info=info, source=f"nyud_mt {len(arrays)} frames ({folder})",
                         depth_zoom=True)
