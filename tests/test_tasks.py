from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch

from mtlbench.errors import MtlbenchError
from mtlbench.tasks import DatasetInfo, build_tasks, nyu40_names, parse_tasks, voc_palette
from tests.conftest import shared_meta

INFO = DatasetInfo()


def read_shipped(name: str) -> list[str]:
    return resources.files("mtlbench.resources").joinpath(name).read_text().split()


def test_task_objects():
    tasks = build_tasks(("depth", "seg", "edge"), INFO)
    assert [(t.out_channels, t.target_key, t.default_loss) for t in tasks.values()] == [
        (1, "depth", "structured_depth"), (40, "seg", "cross_entropy"), (1, "edge", "balanced_bce")]
    assert tasks["seg"].class_names[0] == "wall" and tasks["seg"].class_names[39] == "otherprop"
    # rmse is lower-is-better; miou and ods higher
    assert [(t.key_metric, t.higher_is_better) for t in tasks.values()] == [
        ("rmse", False), ("miou", True), ("ods", True)]


def test_predictions():
    tasks = build_tasks(("depth", "seg", "edge"), INFO)
    torch.testing.assert_close(tasks["depth"].predict(torch.tensor([-0.5, 0.25, 1.5])), torch.tensor([0.0, 2.5, 10.0]))
    assert tasks["seg"].predict(torch.tensor([[[1.0]], [[3.0]], [[2.0]]])[None]).item() == 1
    torch.testing.assert_close(tasks["edge"].predict(torch.tensor([0.0])), torch.tensor([0.5]))


def test_parse_tasks_keeps_order_and_rejects_empties():
    assert parse_tasks(" seg, depth ") == ("seg", "depth")
    with pytest.raises(MtlbenchError, match="empty task list"):
        parse_tasks(" , ")


def test_voc_palette_first_colours_by_hand():
    p = voc_palette(8).tolist()
    assert p == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
                 [128, 128, 128]]


def test_voc_palette_matches_the_nyud_colour_map():
    cmap = np.load(shared_meta() / "cmap_nyud.npy")
    assert np.array_equal(voc_palette(256).numpy(), cmap)


def test_segmentation_colours_use_the_nyud_map_shifted_by_one():
    seg = build_tasks(("seg",), INFO)["seg"]
    img = seg.colorize(torch.tensor([[0, 1, 255]]))
    assert img[0].tolist() == [[128, 0, 0], [0, 128, 0], [0, 0, 0]]


def test_shipped_tables_equal_the_originals():
    meta = shared_meta()
    scipy_io = pytest.importorskip("scipy.io", reason="scipy reads the original .mat files")
    splits = scipy_io.loadmat(meta / "splits.mat")
    assert read_shipped("nyuv2_train_1based.txt") == [str(int(i)) for i in splits["trainNdxs"].ravel()]
    assert read_shipped("nyuv2_test_1based.txt") == [str(int(i)) for i in splits["testNdxs"].ravel()]
    map40 = scipy_io.loadmat(meta / "classMapping40.mat")["mapClass"].ravel()
    assert read_shipped("nyuv2_map894to40_1based.txt") == [str(int(v)) for v in map40]
    m13 = scipy_io.loadmat(meta / "class13Mapping.mat", simplify_cells=True)["classMapping13"]["labels13"]
    assert read_shipped("nyuv2_map40to13_1based.txt") == [str(int(v)) for v in m13]
    assert list(nyu40_names()) == (meta / "names40.txt").read_text().splitlines()


def test_shipped_splits_are_the_official_partition():
    train = {int(i) for i in read_shipped("nyuv2_train_1based.txt")}
    test = {int(i) for i in read_shipped("nyuv2_test_1based.txt")}
    assert (len(train), len(test)) == (795, 654)
    assert not train & test and train | test == set(range(1, 1450))
