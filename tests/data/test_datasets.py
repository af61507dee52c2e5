from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtlbench.data.datasets import build_dataset, build_splits, random_split
from mtlbench.data.pipeline import BatchPipeline
from mtlbench.data.synthrooms import dataset as D
from mtlbench.data.synthrooms import render_batch
from mtlbench.errors import MtlbenchError
from mtlbench.registry import TASKS
from mtlbench.tasks import DatasetInfo
from mtlbench.tasks.edge import label_edges


def test_random_split_sizes_disjoint_and_complete():
    train, val, test = random_split(1449, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (1161, 144, 144)
    joined = torch.cat([train, val, test])
    assert sorted(joined.tolist()) == list(range(1449))
    again = random_split(1449, (0.8, 0.1, 0.1), seed=0)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again))
    assert not torch.equal(random_split(1449, (0.8, 0.1, 0.1), seed=1)[2], test)


def test_label_edges_by_hand():
    seg = torch.tensor([[0, 0, 0, 1, 1],
                        [0, 0, 0, 1, 1],
                        [0, 0, 0, 1, 1]]).view(1, 1, 3, 5)
    # pixels with a different label in their 3×3 neighbourhood: columns 2 and 3
    expected = torch.tensor([[0, 0, 1, 1, 0]] * 3, dtype=torch.float32).view(1, 1, 3, 5)
    torch.testing.assert_close(label_edges(seg), expected)
    thick = label_edges(seg, thickness=2)
    torch.testing.assert_close(thick, torch.tensor([[0, 1, 1, 1, 1]] * 3, dtype=torch.float32).view(1, 1, 3, 5))
    assert label_edges(torch.zeros(1, 1, 4, 4, dtype=torch.long)).sum() == 0  # image border is no edge


def test_label_edges_on_thin_lines_and_single_pixels():
    # Sobel cancels on these: a 1-px line of class 7 in class 3, and one pixel of class 5
    seg = torch.full((1, 1, 7, 7), 3)
    seg[0, 0, :, 1] = 7
    seg[0, 0, 4, 5] = 5
    edges = label_edges(seg)[0, 0]
    assert edges[:, 0:3].eq(1).all()  # the line and both its neighbours
    assert edges[3:6, 4:7].eq(1).all() and edges[4, 5] == 1  # the pixel and its ring
    assert edges[0, 4] == 0 and edges[6, 6] == 0


def test_synthrooms_samples_match_the_renderer_and_the_api_format():
    ds = build_dataset("synthrooms", split="test", size=64, frames=20, fractions=(0.5, 0.25, 0.25))
    assert len(ds) == 5
    sample = ds[0]
    frame = int(sample["index"])  # 1-based
    ref = render_batch(0, [frame - 1], 64)
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    torch.testing.assert_close(sample["image"], torch.from_numpy(ref["image"][0]).permute(2, 0, 1).float() / 255)
    assert sample["depth"].shape == (1, 64, 64)
    assert torch.equal(sample["depth"][0], torch.from_numpy(ref["depth"][0]))
    assert sample["seg"].dtype == torch.int64 and torch.equal(sample["seg"], torch.from_numpy(ref["seg"][0]).long())
    assert "edge" not in sample  # derived targets are the pipeline's, made after augmentation


def test_the_cache_is_reused_and_complete(tmp_path, monkeypatch):
    build_splits("synthrooms", root=str(tmp_path), size=32, frames=10)
    (folder,) = (tmp_path / "synthrooms").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["frames"] == 10 and manifest["format"] == D.SYNTHROOMS_FORMAT
    calls = []
    monkeypatch.setattr(D, "_render_all", lambda *a, **k: calls.append(a))
    build_splits("synthrooms", root=str(tmp_path), size=32, frames=10)
    assert calls == []  # served from the cache


def test_an_interrupted_render_leaves_no_cache(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "_render_all", explode)
    with pytest.raises(KeyboardInterrupt):
        build_splits("synthrooms", root=str(tmp_path), size=32, frames=10)
    assert list((tmp_path / "synthrooms").iterdir()) == []


def test_an_unwritable_cache_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MtlbenchError, match="cannot write the synthrooms cache"):
        build_splits("synthrooms", root=str(blocker), size=32, frames=10)


def test_unknown_split_name():
    splits = build_splits("synthrooms", size=32, frames=10)
    with pytest.raises(MtlbenchError, match="unknown split 'dev'"):
        splits["dev"]


def raw_batch(n=4, size=32):
    b = render_batch(3, list(range(n)), size)
    return {"image": torch.from_numpy(b["image"]), "depth": torch.from_numpy(b["depth"]),
            "seg": torch.from_numpy(b["seg"]), "index": torch.arange(1, n + 1)}


def test_pipeline_without_augmentation_normalises_and_keeps_targets():
    raw = raw_batch()
    out = BatchPipeline(torch.device("cpu"), 32, augment=False)(raw, train=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (raw["image"].permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(out["image"], expected)
    assert torch.equal(out["depth"][:, 0], raw["depth"])
    assert torch.equal(out["seg"], raw["seg"].long())


def test_flip_moves_image_depth_labels_and_edges_together():
    raw = raw_batch()
    torch.manual_seed(0)
    pipe = BatchPipeline(torch.device("cpu"), 32, flip=True, scale=(1.0, 1.0), color_jitter=0.0, normalize=False,
                         tasks=[TASKS.build("edge", DatasetInfo())])
    out = pipe(raw, train=True)
    image = raw["image"].permute(0, 3, 1, 2).float() / 255
    states = []
    for i in range(4):
        flipped = bool(torch.equal(out["seg"][i], raw["seg"][i].long().flip(-1)))
        states.append(flipped)
        src_img = image[i].flip(-1) if flipped else image[i]
        src_depth = raw["depth"][i].flip(-1) if flipped else raw["depth"][i]
        torch.testing.assert_close(out["image"][i], src_img)
        assert torch.equal(out["depth"][i, 0], src_depth)
        torch.testing.assert_close(out["edge"][i], label_edges(out["seg"][i][None, None])[0])
    assert True in states and False in states  # seed 0 flips some frames and not others


def test_resized_crop_never_invents_labels_or_depths():
    raw = raw_batch()
    torch.manual_seed(1)
    pipe = BatchPipeline(torch.device("cpu"), 32, flip=False, scale=(0.3, 0.5), color_jitter=0.0)
    out = pipe(raw, train=True)
    for i in range(4):
        # nearest resampling: every output label and depth value exists in the source frame
        assert set(out["seg"][i].unique().tolist()) <= set(raw["seg"][i].unique().tolist())
        assert np.isin(out["depth"][i].numpy(), raw["depth"][i].numpy()).all()


def test_depth_discontinuities_as_edges():
    from mtlbench.tasks.edge import depth_edges

    depth = torch.full((1, 1, 6, 8), 2.0)
    depth[..., 4:] = 4.0  # a step from 2 m to 4 m between columns 3 and 4
    edges = depth_edges(depth, threshold=0.3)[0, 0]
    # normalised Sobel (kernel / 8) of log depth: |ln 4 − ln 2| · 4 / 8 = 0.347 beside the step, 0 elsewhere
    assert edges[:, 3:5].eq(1).all() and edges[:, :3].eq(0).all() and edges[:, 5:].eq(0).all()
    depth[0, 0, 1, 1] = 0  # an invalid pixel: no edge around it from the hole itself
    assert depth_edges(depth, threshold=0.3)[0, 0, :3, :3].sum() == 0
    assert depth_edges(depth, threshold=0.35).sum() == 0  # a 2x step stays below 0.35


def test_build_dataset_is_importable_from_the_data_package():
    from mtlbench.data import build_dataset as public
    from mtlbench.data import build_splits

    assert public is build_dataset and build_splits.__module__ == "mtlbench.data.datasets"
    with pytest.raises(ImportError):
        from mtlbench.data import no_such_name  # noqa: F401


def test_dataset_options_are_checked_against_what_the_dataset_declares():
    with pytest.raises(MtlbenchError, match="dataset synthrooms takes no option 'classes'"):
        build_dataset("synthrooms", split="test", size=32, frames=10, classes=13)
    with pytest.raises(MtlbenchError, match=r"did you mean 'frames'\?"):
        build_dataset("synthrooms", split="test", size=32, frame=10)
    with pytest.raises(MtlbenchError, match="split 'tset': choose from train, val, test"):
        build_dataset("synthrooms", split="tset", size=32, frames=10)
