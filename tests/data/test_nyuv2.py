"""NYUv2 from a labeled file with the real layout, holding the real frames 433 and 464.

Where the project's reference samples are absent (a user's clone), synthrooms frames rendered at
480×640 stand in for them, so that the layout, mapping and bad-input tests still run."""

from __future__ import annotations

import errno
import hashlib
import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.data import nyuv2 as N
from mtlbench.data.datasets import build_dataset, build_splits
from mtlbench.data.nyud_mt import read_nyud_mt
from mtlbench.errors import MtlbenchError
from tests.conftest import SHARED

FULLRES = SHARED / "nyuv2_ref" / "samples_fullres"
LABELS13 = SHARED / "nyuv2_ref" / "labels13_test"
SAMPLES = (433, 464)

REAL = FULLRES.is_dir()
needs_labels13 = pytest.mark.skipif(not LABELS13.is_dir(), reason=f"real 13-class NYUv2 labels not found at "
                                                                  f"{LABELS13} (only in the project workspace)")


def read_png(path) -> np.ndarray:
    from torchvision.io import ImageReadMode, read_image

    x = read_image(str(path), ImageReadMode.UNCHANGED)
    return x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()


def sample(i: int) -> dict[str, np.ndarray]:
    if not REAL:
        from mtlbench.data.synthrooms import render_scene

        frame = render_scene(7, i, (480, 640), holes=True)
        return {"image": frame["image"], "raw_depth": frame["depth"], "seg40": frame["seg"]}
    return {"image": read_png(FULLRES / f"{i:06d}.png"),
            "raw_depth": read_png(FULLRES / f"depth_gt_{i:06d}.png").astype(np.float32) / 5000.0,
            "seg40": read_png(FULLRES / f"segm_gt_{i:06d}.png")}


def to_894(seg40: np.ndarray) -> np.ndarray:
    """A raw 894-class label map whose 40-class mapping is ``seg40`` (255 → 0 unlabelled)."""
    original = SHARED / "nyuv2_ref/meta/map894to40_1based.txt"  # independent of the shipped copy
    map40 = np.loadtxt(original, dtype=np.int64) if original.is_file() else N._resource_ints(
        "nyuv2_map894to40_1based.txt")
    first = {c: int(np.flatnonzero(map40 == c + 1)[0]) + 1 for c in range(40)}
    lut = np.zeros(256, np.uint16)
    for c, k in first.items():
        lut[c] = k
    return lut[seg40]


def make_labeled_mat(path, frames: int = 500, samples=SAMPLES) -> None:
    """The labeled file's layout: MATLAB axes reversed, chunked per frame; unwritten frames are 0."""
    with h5py.File(path, "w", userblock_size=512) as f:
        images = f.create_dataset("images", (frames, 3, 640, 480), np.uint8, chunks=(1, 3, 640, 480))
        depths = f.create_dataset("depths", (frames, 640, 480), np.float32, chunks=(1, 640, 480))
        raw = f.create_dataset("rawDepths", (frames, 640, 480), np.float32, chunks=(1, 640, 480))
        labels = f.create_dataset("labels", (frames, 640, 480), np.uint16, chunks=(1, 640, 480))
        for i in samples:
            s = sample(i)
            images[i - 1] = s["image"].transpose(2, 1, 0)
            filled = np.where(s["raw_depth"] > 0, s["raw_depth"], 3.0).astype(np.float32)  # stands in for in-painting
            depths[i - 1] = filled.T
            raw[i - 1] = s["raw_depth"].T
            labels[i - 1] = to_894(s["seg40"]).T
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """Frames 1..500 (enough for the random split; the real samples at their indices)."""
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    make_labeled_mat(path)
    return path


@pytest.fixture(scope="module")
def labeled_full(tmp_path_factory):
    """All 1449 frames, as the official split needs."""
    path = tmp_path_factory.mktemp("nyu_full") / "nyu_depth_v2_labeled.mat"
    make_labeled_mat(path, frames=1449)
    return path


@pytest.fixture(scope="module")
def native(labeled, tmp_path_factory):
    out = tmp_path_factory.mktemp("native")
    N.prepare_nyuv2(labeled, out, size=0, classes=40, raw_depth=True)
    arrays, manifest, _ = N.load_cache(out, 0, 40, True)
    return arrays, manifest


@pytest.mark.parametrize("i", SAMPLES)
def test_native_frames_equal_the_real_pngs(native, i):
    arrays, _ = native
    s = sample(i)
    pos = int(torch.nonzero(arrays.index == i)[0])
    assert np.array_equal(arrays.image[pos].numpy(), s["image"])  # orientation: H×W×3, not transposed
    assert np.array_equal(arrays.depth[pos].numpy(), s["raw_depth"])
    assert np.array_equal(arrays.seg[pos].numpy(), s["seg40"])  # 894 → 40, 0 → 255


def test_manifest(native, labeled):
    _, manifest = native
    assert manifest["format"] == N.FORMAT_VERSION and manifest["frames"] == 500
    assert manifest["source"]["bytes"] == labeled.stat().st_size
    assert manifest["source"]["sha256"] == hashlib.sha256(labeled.read_bytes()).hexdigest()
    assert manifest["shape"]["image"] == [500, 480, 640, 3]
    assert manifest["depth"] == "rawDepths" and manifest["classes"] == 40
    assert len(manifest["splits"]["official_test_1based"]) == 654
    assert manifest["class_names"][:2] == ["wall", "floor"]


@pytest.fixture(scope="module")
def native13(labeled, tmp_path_factory):
    out = tmp_path_factory.mktemp("native13")
    N.prepare_nyuv2(labeled, out, size=0, classes=13)
    return N.load_cache(out, 0, 13, False)[0]


@needs_labels13
@pytest.mark.parametrize("i", SAMPLES)
def test_40_to_13_cross_check_on_the_real_samples(native13, i):
    arrays = native13
    pos = int(torch.nonzero(arrays.index == i)[0])
    ours = arrays.seg[pos].numpy().astype(np.int64)
    reference = read_png(LABELS13 / f"new_nyu_class13_{i:04d}.png").astype(np.int64)  # 0 = unlabelled, 1..13
    assert np.array_equal(np.where(ours == 255, 0, ours + 1), reference)


def test_894_classes_keep_the_raw_ids(labeled, tmp_path):
    N.prepare_nyuv2(labeled, tmp_path, size=0, classes=894)
    arrays, manifest, _ = N.load_cache(tmp_path, 0, 894, False)
    assert arrays.seg.dtype == torch.uint16 and manifest["ignore_index"] == 65535
    pos = int(torch.nonzero(arrays.index == 433)[0])
    expected = to_894(sample(433)["seg40"]).astype(np.int64)
    ours = arrays.seg[pos].numpy().astype(np.int64)
    assert np.array_equal(np.where(ours == 65535, 0, ours + 1), expected)


def test_resized_cache_and_inpainted_depth(labeled, tmp_path):
    N.prepare_nyuv2(labeled, tmp_path, size=64)
    arrays, manifest, _ = N.load_cache(tmp_path, 64, 40, False)
    assert tuple(arrays.image.shape) == (500, 64, 64, 3) and manifest["depth"] == "depths"
    pos = int(torch.nonzero(arrays.index == 433)[0])
    depth = arrays.depth[pos].numpy()
    assert (depth > 0).all()  # in-painted source: no holes
    s = sample(433)
    assert set(np.unique(arrays.seg[pos].numpy())) <= set(np.unique(s["seg40"]))


def test_prepare_keeps_the_scored_ground_truth_and_normals(labeled_full, labeled, tmp_path):
    N.prepare_nyuv2(labeled_full, tmp_path, size=32, raw_depth=True)
    arrays, manifest, scoring = N.load_cache(tmp_path, 32, 40, True)
    top, bottom, left, right = N.SCORE_CROP
    assert (bottom - top, right - left) == (425, 560) and scoring.frame == (480, 640)
    assert manifest["score"] == {"frame": [480, 640], "crop": [45, 470, 40, 600], "frames": 654}
    # the official test frames alone, in file order; each the original frame's pixels, never resized
    test_ids = sorted(N.official_split()[1].tolist())
    assert scoring.depth.shape == (654, 425, 560)
    k = test_ids.index(433)
    s = sample(433)
    assert np.array_equal(scoring.depth[k].numpy(), s["raw_depth"][top:bottom, left:right])
    assert np.array_equal(scoring.seg[k].numpy(), s["seg40"][top:bottom, left:right])
    # normals fitted at 480×640, then resized with the frames: unit where valid
    native = N.frame_normals(torch.from_numpy(s["raw_depth"])[None])[0]
    assert torch.equal(scoring.normals[k], native[top:bottom, left:right].to(torch.float16))
    pos = int(torch.nonzero(arrays.index == 433)[0])
    length = arrays.normals[pos].float().norm(dim=-1)
    assert ((length - 1).abs()[length > 0] < 2e-3).all() and (length > 0).float().mean() > 0.5
    blank = int(torch.nonzero(arrays.index == 1)[0])  # a frame the test file leaves empty
    assert arrays.normals[blank].abs().sum() == 0
    # a file without every official test frame keeps no scored ground truth
    partial = tmp_path / "partial"
    N.prepare_nyuv2(labeled, partial, size=32)
    assert N.load_cache(partial, 32, 40, False)[2] is None


def test_resize_never_blends_invalid_depth():
    depth = np.zeros((8, 8), np.float32)
    depth[:, :4] = 2.0  # left half valid at 2 m, right half a hole
    image = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    seg = torch.zeros(1, 8, 8, dtype=torch.uint8)
    _, d, _ = N.resize_frames(image, torch.from_numpy(depth)[None], seg, 4)
    d = d[0].numpy()
    # valid output pixels keep exactly 2 m (no averaging with 0); hole pixels stay 0
    assert set(np.unique(d).tolist()) == {0.0, 2.0}
    assert (d[:, :2] == 2.0).all() and (d[:, 2:] == 0.0).all()


def test_rerunning_on_a_complete_cache_does_nothing(labeled, tmp_path):
    first = N.prepare_nyuv2(labeled, tmp_path, size=32)
    stamp = (first.folder / "image.npy").stat().st_mtime_ns
    again = N.prepare_nyuv2(labeled, tmp_path, size=32)
    assert first.written and not again.written
    assert (first.folder / "image.npy").stat().st_mtime_ns == stamp


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(labeled, tmp_path):
    def stop(done, total):
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        N.prepare_nyuv2(labeled, tmp_path, size=32, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_mid_write_is_one_error_and_leaves_nothing(labeled, tmp_path, monkeypatch):
    real = N.resize_frames
    calls = {"n": 0}

    def full(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(N, "resize_frames", full)
    with pytest.raises(MtlbenchError, match="no space left on the device; nothing was kept"):
        N.prepare_nyuv2(labeled, tmp_path, size=32)
    assert list(tmp_path.iterdir()) == []


def test_an_older_cache_format_is_an_error_for_runs_and_rebuilt_by_prepare(labeled, tmp_path):
    result = N.prepare_nyuv2(labeled, tmp_path, size=32)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    manifest["format"] = 0
    (result.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MtlbenchError, match=f"has format 0, this mtlbench reads {N.FORMAT_VERSION}: rebuild it with"):
        N.load_cache(tmp_path, 32, 40, False)
    assert N.prepare_nyuv2(labeled, tmp_path, size=32).written
    assert N.load_cache(tmp_path, 32, 40, False)[1]["format"] == N.FORMAT_VERSION


def test_bad_files(labeled, tmp_path):
    with pytest.raises(MtlbenchError, match="not found: pass the path of nyu_depth_v2_labeled.mat"):
        N.LabeledMat(tmp_path / "absent.mat")
    v5 = tmp_path / "v5.mat"
    v5.write_bytes(b"MATLAB 5.0 MAT-file, Platform: PCWIN" + bytes(200))
    with pytest.raises(MtlbenchError, match="MATLAB v5 .mat, not v7.3 \\(HDF5\\): .*nyu_depth_v2_labeled.mat"):
        N.LabeledMat(v5)
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(labeled.read_bytes()[: labeled.stat().st_size // 2])
    with pytest.raises(MtlbenchError, match="truncated or corrupt"):
        with N.LabeledMat(truncated) as src:
            for i in range(0, src.n, 16):
                src.frames(i, i + 16)
    no_labels = tmp_path / "nolabels.mat"
    with h5py.File(no_labels, "w") as f:
        f.create_dataset("images", (2, 3, 640, 480), np.uint8)
        f.create_dataset("depths", (2, 640, 480), np.float32)
    with pytest.raises(MtlbenchError, match="lacks labels"):
        N.LabeledMat(no_labels)
    wrong = tmp_path / "wrong.mat"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("images", (2, 3, 480, 640), np.uint8)  # not MATLAB's reversed axes
        f.create_dataset("depths", (2, 640, 480), np.float32)
        f.create_dataset("labels", (2, 640, 480), np.uint16)
    with pytest.raises(MtlbenchError, match=r"images is uint8\[2, 3, 480, 640\], expected uint\[2, 3, 640, 480\]"):
        N.LabeledMat(wrong)
    float_labels = tmp_path / "float_labels.mat"
    with h5py.File(float_labels, "w") as f:
        f.create_dataset("images", (2, 3, 640, 480), np.uint8)
        f.create_dataset("depths", (2, 640, 480), np.float32)
        f.create_dataset("labels", (2, 640, 480), np.float64)
    with pytest.raises(MtlbenchError, match="labels is float64"):
        N.LabeledMat(float_labels)


def test_official_and_random_splits(labeled_full, tmp_path):
    N.prepare_nyuv2(labeled_full, tmp_path, size=32)
    official = build_splits("nyuv2", root=str(tmp_path), size=32, protocol="official", val_frames=80)
    ids = {s: set(official[s].arrays.index.tolist()) for s in ("train", "val", "test")}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [715, 80, 654]
    # the official 40-class split is scored at 425×560, its frames' ground truth in the same order
    scoring = official.test.scoring
    assert scoring is not None and scoring.size == (425, 560) and scoring.depth.shape[0] == 654
    train_ids, test_ids = N.official_split()
    assert ids["test"] == set(test_ids.tolist())
    assert ids["train"] | ids["val"] == set(train_ids.tolist()) and not ids["train"] & ids["val"]
    again = build_splits("nyuv2", root=str(tmp_path), size=32, protocol="official", val_frames=80)
    assert set(again.val.arrays.index.tolist()) == ids["val"]
    rand = build_splits("nyuv2", root=str(tmp_path), size=32, protocol="random")
    sizes = [len(rand[s]) for s in ("train", "val", "test")]
    assert sizes == [1161, 144, 144]
    assert rand.test.scoring is None  # Beneath the Surface scores its own frames as trained
    partial = tmp_path / "partial"
    N.prepare_nyuv2(_small(tmp_path), partial, size=32)
    with pytest.raises(MtlbenchError, match="the official split needs frames this data lacks"):
        build_splits("nyuv2", root=str(partial), size=32, protocol="official")
    assert not set(rand.train.arrays.index.tolist()) & set(rand.test.arrays.index.tolist())
    with pytest.raises(MtlbenchError,
                       match="options.protocol \\(dataset nyuv2\\): must be one of random, official, got 'eigen'"):
        build_splits("nyuv2", root=str(tmp_path), size=32, protocol="eigen")


def _small(tmp_path):
    path = tmp_path / "small.mat"
    make_labeled_mat(path, frames=470)
    return path


def test_samples_through_the_dataset_api(labeled_full, tmp_path):
    N.prepare_nyuv2(labeled_full, tmp_path, size=32, raw_depth=True)
    test = build_dataset("nyuv2", split="test", root=str(tmp_path), size=32, protocol="official", raw_depth=True)
    pos = int(torch.nonzero(test.arrays.index == 433)[0])
    s = test[pos]
    assert s["index"] == 433
    assert s["image"].shape == (3, 32, 32) and s["depth"].shape == (1, 32, 32) and s["seg"].dtype == torch.int64
    assert (s["depth"] == 0).any()  # raw depth keeps holes
    assert "edge" not in s and set(test.info.targets) == {"depth", "seg", "normals"}  # edges: the edge task's


@pytest.mark.slow
def test_cli_prepare_and_a_short_run(labeled, tmp_path):
    runner = CliRunner()
    out = tmp_path / "nyu"
    r = runner.invoke(app, ["data", "prepare", "nyuv2", "--mat", str(labeled), "--out", str(out), "--size", "64"])
    assert r.exit_code == 0, r.output
    again = runner.invoke(app, ["data", "prepare", "nyuv2", "--mat", str(labeled), "--out", str(out), "--size", "64"])
    assert "already complete, nothing to do" in again.stderr
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["run", "--data", "nyuv2", "--data-root", str(out), "--size", "64", "--protocol", "random",
                            "--backbone", "test_resnet", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                            "--run-dir", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "data: nyuv2 500 frames, depths, split random" in r.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["sizes"] == {"train": 400, "val": 50, "test": 50} and metrics["dataset"] == "nyuv2"


def test_cli_bad_inputs(labeled, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["run", "--data", "nyuv2", "--backbone", "test_resnet", "--run-dir", str(tmp_path / "r")])
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: dataset nyuv2 needs data.root, a folder made by "
                                "`mtlbench data prepare nyuv2 --mat nyu_depth_v2_labeled.mat --out DIR`")
    r = runner.invoke(app, ["run", "--data", "nyuv2", "--data-root", str(tmp_path / "none"), "--backbone",
                            "test_resnet", "--run-dir", str(tmp_path / "r")])
    assert r.exit_code == 2 and "not found: prepare it with `mtlbench data prepare nyuv2" in r.stderr
    v5 = tmp_path / "old.mat"
    v5.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(100))
    r = runner.invoke(app, ["data", "prepare", "nyuv2", "--mat", str(v5), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "MATLAB v5 .mat, not v7.3" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def make_nyud_mt(root, train=(433,), val=(464,)) -> None:
    """The MTI-Net release's folders, from the real samples (segmentation: 0 = ignore, c + 1)."""
    from torchvision.io import write_jpeg, write_png

    for sub in ("images", "depth", "segmentation", "gt_sets"):
        (root / sub).mkdir(parents=True)
    for i in train + val:
        s = sample(i)
        write_jpeg(torch.from_numpy(s["image"]).permute(2, 0, 1).contiguous(), str(root / "images" / f"{i:04d}.jpg"),
                   quality=95)
        np.save(root / "depth" / f"{i:04d}.npy", s["raw_depth"])
        seg = np.where(s["seg40"] == 255, 0, s["seg40"].astype(np.int64) + 1).astype(np.uint8)
        write_png(torch.from_numpy(seg)[None], str(root / "segmentation" / f"{i:04d}.png"))
    (root / "gt_sets" / "train.txt").write_text("".join(f"{i:04d}\n" for i in train))
    (root / "gt_sets" / "val.txt").write_text("".join(f"{i:04d}\n" for i in val))


def test_nyud_mt_folders_are_read_directly(tmp_path):
    root = tmp_path / "NYUD_MT"
    make_nyud_mt(root, train=(433, 464), val=(464,))
    arrays, lists, scoring = read_nyud_mt(root, size=0)
    assert scoring.size == (480, 640) and torch.equal(scoring.seg[0], arrays.seg[2])
    assert lists == {"train": [0, 1], "val": [2]}
    assert arrays.index.tolist() == [433, 464, 464]
    s = sample(464)
    assert np.array_equal(arrays.seg[2].numpy(), s["seg40"])  # c + 1 → c, 0 → 255
    assert np.array_equal(arrays.depth[2].numpy(), s["raw_depth"])
    jpeg_error = np.abs(arrays.image[2].numpy().astype(int) - s["image"].astype(int)).mean()
    assert jpeg_error < 3  # JPEG at quality 95
    splits = build_splits("nyud_mt", root=str(root), size=64, val_frames=1)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert splits.test.arrays.index.tolist() == [464]


def test_nyud_mt_bad_folders(tmp_path):
    with pytest.raises(MtlbenchError, match="gt_sets/train.txt not found: .* is not an NYUD-MT folder"):
        build_splits("nyud_mt", root=str(tmp_path), size=64)
    root = tmp_path / "mt"
    make_nyud_mt(root)
    (root / "depth" / "0464.npy").unlink()
    with pytest.raises(MtlbenchError, match="NYUD-MT frame 0464: .*0464.npy not found"):
        build_splits("nyud_mt", root=str(root), size=64)


def make_four_task_nyud_mt(root, frames=(1, 2, 3), test=(4, 5), size=(34, 45)) -> dict[int, dict]:
    """An ATRC-style NYUD-MT release (PNG images, edges and normals) of synthrooms frames at a
    non-square size of their own; returns the frames written."""
    from torchvision.io import write_png

    from mtlbench.data.normals import encode_normals_png
    from mtlbench.data.synthrooms import render_scene

    for sub in ("images", "depth", "segmentation", "edge", "normals", "gt_sets"):
        (root / sub).mkdir(parents=True)
    written = {}
    for i in frames + test:
        f = render_scene(3, i, size)
        edge = np.zeros(size, np.uint8)
        edge[5 + i, :] = 255  # an edge map of the release's own, unlike any label boundary
        seg = np.where(f["seg"] == 255, 0, f["seg"].astype(np.int64) + 1).astype(np.uint8)
        png = {"images": f["image"], "segmentation": seg, "edge": edge, "normals": encode_normals_png(f["normals"])}
        for sub, arr in png.items():
            t = torch.from_numpy(arr)
            write_png((t.permute(2, 0, 1) if t.dim() == 3 else t[None]).contiguous(), str(root / sub / f"{i:04d}.png"))
        np.save(root / "depth" / f"{i:04d}.npy", f["depth"])
        written[i] = {**f, "edge": edge > 0}
    (root / "gt_sets" / "train.txt").write_text("".join(f"{i:04d}\n" for i in frames))
    (root / "gt_sets" / "val.txt").write_text("".join(f"{i:04d}\n" for i in test))
    return written


def test_nyud_mt_four_tasks_normals_edges_and_the_test_split_at_its_own_resolution(tmp_path):
    root = tmp_path / "NYUDv2"
    frames = make_four_task_nyud_mt(root)
    splits = build_splits("nyud_mt", root=str(root), size=32, val_frames=1)
    assert splits.info.normals and splits.depth_zoom
    test = splits.test
    assert test.arrays.normals.shape == (2, 32, 32, 3) and test.arrays.edge.shape == (2, 32, 32)
    s = test.scoring
    assert s is not None and s.frame == (34, 45) and s.crop == (0, 34, 0, 45) and s.size == (34, 45)
    for k, i in enumerate((4, 5)):
        f = frames[i]
        assert np.array_equal(s.seg[k].numpy(), f["seg"])
        assert np.array_equal(s.depth[k].numpy(), f["depth"])
        assert np.array_equal(s.edge[k].numpy() > 0, f["edge"])
        valid = np.linalg.norm(f["normals"], axis=-1) > 0.5
        assert np.array_equal(np.linalg.norm(s.normals[k].numpy(), axis=-1) > 0.5, valid)
        cos = (s.normals[k].numpy()[valid] * f["normals"][valid]).sum(-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.7  # 8-bit PNG quantisation
    targets = s.batch(torch.tensor([1]), torch.device("cpu"), splits.info)
    assert targets["normals"].shape == (1, 3, 34, 45) and targets["edge"].shape == (1, 1, 34, 45)
    assert torch.equal(targets["edge"][0, 0].bool(), torch.from_numpy(frames[5]["edge"]))
    # a raw head output at the input resolution comes back at the frames' own size
    assert s.resize(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 34, 45)
    # the training edges are the release's own lines, resized so that no line is lost
    train_edges = splits.train.arrays.edge
    assert all(int(e.sum(1).gt(0).sum()) >= 1 for e in train_edges)


def test_nyud_mt_without_normals_has_no_normals_task(tmp_path):
    root = tmp_path / "mt"
    make_nyud_mt(root, train=(433, 464))
    splits = build_splits("nyud_mt", root=str(root), size=64, val_frames=1)
    assert not splits.info.normals and "normals" not in splits.test.arrays.targets
    assert splits.test.scoring is not None and "edges from label boundaries" in splits.test.scoring.note


def test_data_prepare_runs_the_dataset_s_own_prepare_step(labeled, tmp_path):
    runner = CliRunner()
    out = tmp_path / "nyu"
    r = runner.invoke(app, ["data", "prepare", "nyuv2", "--source", str(labeled), "--out", str(out),
                            "--set", "size=32", "--set", "classes=13"])
    assert r.exit_code == 0, r.output
    assert (out / N.variant_name(32, 13, False) / "manifest.json").is_file()
    same = N.prepare_nyuv2(labeled, out, size=32, classes=13)  # the library's own call finds it complete
    assert not same.written
    none = runner.invoke(app, ["data", "prepare", "synthrooms", "--source", str(labeled), "--out", str(out)])
    assert none.exit_code == 2 and "dataset synthrooms has nothing to prepare" in none.stderr
    assert "datasets with a prepare step: nyuv2" in none.stderr
    typo = runner.invoke(app, ["data", "prepare", "nyuv2", "--source", str(labeled), "--out", str(tmp_path / "t"),
                               "--set", "sise=32"])
    assert typo.exit_code == 2 and "'sise'" in typo.stderr and "size" in typo.stderr
    assert not (tmp_path / "t").exists()
