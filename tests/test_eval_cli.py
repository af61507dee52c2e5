"""`mtlbench eval`, `compare` and `predict` on tiny runs trained here."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtlbench.report import results as R
from tests.conftest import SHARED as SHARED_ROOT
from tests.conftest import TINY_ARGS as TINY
from tests.conftest import assert_bad_input, invoke

SHARED = SHARED_ROOT / "nyuv2_ref" / "samples_fullres"

# every test here reads runs trained by `mtlbench run` (the `runs` fixture) or trains its own
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A three-task run and one single-task run per task, all on the same frames."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, tasks in [("multi", "depth,seg,edge"), ("depth", "depth"), ("seg", "seg"), ("edge", "edge")]:
        # a few steps at a high rate, so that every key metric is above zero (Δm divides by them)
        result = invoke("run", "--model", "hps", "--task", tasks, *TINY, "--epochs", "3", "--lr", "0.01",
                        "--run-dir", root / name)
        assert result.exit_code == 0, result.output
        out[name] = root / name
    return out


def test_eval_reproduces_the_runs_test_metrics(runs):
    run = runs["multi"]
    written = json.loads((run / "metrics.json").read_text())
    result = invoke("eval", run)
    assert result.exit_code == 0, result.output
    assert "odsF" in result.stdout and "DBE accuracy px" in result.stdout
    again = json.loads((run / "metrics.json").read_text())
    for task in ("depth", "seg", "edge"):
        assert again["test"][task] == pytest.approx(written["test"][task], rel=1e-5, abs=1e-7)
    assert again["eval"]["test"]["checkpoint"] == "best" and again["eval"]["test"]["eigen_crop"] is False
    assert again["best_epoch"] == written["best_epoch"]  # the rest of the file is kept


def test_eval_options_splits_and_figures(runs, tmp_path):
    run = runs["multi"]
    before = json.loads((run / "metrics.json").read_text())
    result = invoke("eval", run, "--split", "val", "--eigen-crop", "--no-boundaries", "--figures", "2")
    assert result.exit_code == 0, result.output
    after = json.loads((run / "metrics.json").read_text())
    assert after["eval"]["val"]["eigen_crop"] is True and "dbe_acc" not in after["val"]["depth"]
    assert after["test"] == before["test"]
    pngs = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert len([p for p in pngs if p.startswith("val-")]) == 2 and {"curves.png", "weights.png"} <= set(pngs)
    with Image.open(run / "figures" / pngs[0]) as im:
        assert im.size[0] > 3 * 64 and im.size[1] > 2 * 64  # 3 columns, 2 rows of 64-pixel panels


def test_eval_keeps_every_evaluation_with_its_settings(runs, tmp_path):
    run = tmp_path / "h"
    run.mkdir()
    for name in ("config.toml", "best.pt", "last.pt", "metrics.json"):
        (run / name).write_bytes((runs["multi"] / name).read_bytes())
    trained = json.loads((run / "metrics.json").read_text())
    assert invoke("eval", run, "--edge-matching", "fast").exit_code == 0
    assert invoke("eval", run, "--edge-tolerance", "0.02", "--edge-matching", "fast").exit_code == 0
    after = json.loads((run / "metrics.json").read_text())
    tests = [h for h in after["history"] if h["split"] == "test"]
    # the run's own test (exact matching at its end), then each re-evaluation with its settings
    assert [(h["edge_matching"], h["edge_tolerance"]) for h in tests] == [("exact", 0.011), ("fast", 0.011),
                                                                         ("fast", 0.02)]
    assert tests[0]["result"] == trained["test"]
    assert after["test"] == tests[-1]["result"] and after["eval"]["test"]["edge_tolerance"] == 0.02
    assert tests[1]["result"]["edge"]["ods"] >= tests[0]["result"]["edge"]["ods"]  # many-to-one ≥ one-to-one
    # the same settings again replace their entry rather than add one
    assert invoke("eval", run, "--edge-matching", "fast").exit_code == 0
    again = [h for h in json.loads((run / "metrics.json").read_text())["history"] if h["split"] == "test"]
    assert len(again) == 3 and again[-1]["edge_tolerance"] == 0.011


def test_eval_bad_input(runs, tmp_path):
    assert_bad_input(invoke("eval", tmp_path), "not an mtlbench run directory")
    assert_bad_input(invoke("eval", runs["depth"], "--split", "dev"), "split 'dev'")
    assert_bad_input(invoke("eval", runs["depth"], "--checkpoint", "first"), "choose best or last")
    assert_bad_input(invoke("eval", runs["depth"], "--min-depth", "20"), "eval.min_depth (--min-depth) 20",
                     "below the evaluation cap 10")
    empty = tmp_path / "nock"
    empty.mkdir()
    (empty / "config.toml").write_text((runs["depth"] / "config.toml").read_text())
    assert_bad_input(invoke("eval", empty), "best.pt not found")
    assert not (empty / "metrics.json").exists()
    assert_bad_input(invoke("eval", runs["depth"], "--max-depth", "-1"), "eval.max_depth", "got -1")
    # a file where the figures folder goes: refused before evaluating
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("config.toml", "best.pt"):
        (blocked / name).write_bytes((runs["depth"] / name).read_bytes())
    (blocked / "figures").write_text("")
    assert_bad_input(invoke("eval", blocked, "--figures", "1"), "a file is in the way")
    assert not (blocked / "metrics.json").exists()


def test_compare_with_single_task_references(runs, tmp_path):
    result = invoke("compare", runs["multi"], runs["depth"], runs["seg"], runs["edge"], "--format", "csv",
                    "--delta", "both")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[1][0].startswith("# No published numbers")  # the caption travels with the numbers
    header, first = rows[2], rows[3]
    m = {t: json.loads((runs[t] / "metrics.json").read_text())["test"] for t in runs}
    # Δm (MTI-Net) computed here from the three single-task runs, straight from the formula
    terms = [-(m["multi"]["depth"]["rmse"] - m["depth"]["depth"]["rmse"]) / m["depth"]["depth"]["rmse"],
             (m["multi"]["seg"]["miou"] - m["seg"]["seg"]["miou"]) / m["seg"]["seg"]["miou"],
             (m["multi"]["edge"]["ods"] - m["edge"]["edge"]["ods"]) / m["edge"]["edge"]["ods"]]
    col = header.index(R.DELTA_LABEL["mti"] + " ↑")
    assert first[0] == "hps [depth,seg,edge]"
    assert float(first[col]) == pytest.approx(100 * sum(terms) / 3, abs=0.006)
    assert rows[4][col] == "–"  # a one-task run has no Δm
    assert "no published protocol" in rows[0][0]  # synthrooms: no published rows

    out = tmp_path / "t.tex"
    result = invoke("compare", runs["multi"], "--format", "latex", "--out", out, "--per-class")
    assert result.exit_code == 0, result.output
    tex = out.read_text()
    assert tex.count(r"\begin{tabular}") == 2 and "wall" in tex


def test_compare_bad_input(runs, tmp_path):
    assert_bad_input(invoke("compare", runs["multi"], "--out", tmp_path / "x.md"), "--out needs a file format")
    assert_bad_input(invoke("compare", runs["multi"], "--delta", "some"), "unknown --delta")
    assert_bad_input(invoke("compare", runs["multi"], "--format", "html"), "unknown --format")
    assert_bad_input(invoke("compare", tmp_path), "not an mtlbench run directory")
    assert_bad_input(invoke("compare", runs["multi"], "--split", "train"), "has no train split")
    assert_bad_input(invoke("compare", runs["depth"], "--per-class"), "no run has per-class IoU")


def _frame_png(tmp_path, name="frame"):
    from mtlbench.data.synthrooms import render_batch

    f = render_batch(3, [0], 96)
    rgb = tmp_path / f"{name}.png"
    Image.fromarray(f["image"][0]).save(rgb)
    depth = tmp_path / f"{name}_depth.png"
    Image.fromarray((f["depth"][0] * 5000).round().astype(np.uint16)).save(depth)
    labels = tmp_path / f"{name}_labels.png"
    Image.fromarray(f["seg"][0].astype(np.uint8)).save(labels)
    return rgb, depth, labels, f


def test_predict_writes_what_the_model_predicts(runs, tmp_path):
    rgb, depth, labels, frame = _frame_png(tmp_path)
    out = tmp_path / "pred"
    result = invoke("predict", runs["multi"], rgb, "--out", out, "--depth", depth, "--labels", labels)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame_depth.npy", "frame_edge.png", "frame_grid.png", "frame_seg.png"]  # hps: no attention
    # the same prediction computed directly from the checkpoint
    from mtlbench.data.datasets import apply_clahe
    from mtlbench.data.nyuv2 import resize_frames
    from mtlbench.engine.runs import inference_parts

    parts = inference_parts(runs["multi"], "cpu", "best")
    img, d, s = resize_frames(torch.from_numpy(frame["image"]), torch.from_numpy(frame["depth"]),
                              torch.from_numpy(frame["seg"]).long(), 64)
    batch = parts.pipeline({"image": apply_clahe(img, 2.0), "depth": d, "seg": s, "index": torch.tensor([0])},
                           train=False)
    with torch.no_grad():
        y = parts.model(batch["image"])
    np.testing.assert_allclose(np.load(out / "frame_depth.npy"), parts.tasks["depth"].predict(y["depth"])[0, 0],
                               rtol=1e-5, atol=1e-5)
    with Image.open(out / "frame_seg.png") as im:
        assert np.array_equal(np.array(im), y["seg"].argmax(1)[0].numpy())


def test_predict_bad_input(runs, tmp_path):
    rgb, depth, _, _ = _frame_png(tmp_path)
    out = tmp_path / "o"
    assert_bad_input(invoke("predict", runs["multi"], rgb, rgb, "--depth", depth, "--out", out),
                     "depth_gt lists 1 for 2 images")
    assert_bad_input(invoke("predict", runs["multi"], tmp_path / "none.png", "--out", out), "not found")
    (tmp_path / "bad.png").write_text("not an image")
    assert_bad_input(invoke("predict", runs["multi"], tmp_path / "bad.png", "--out", out), "not a readable")
    small = tmp_path / "small_depth.png"
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(small)
    assert_bad_input(invoke("predict", runs["multi"], rgb, "--depth", small, "--out", out), "same frame")
    assert not out.exists()  # every input is checked before anything is written
    (tmp_path / "afile").write_text("")
    assert_bad_input(invoke("predict", runs["multi"], rgb, "--out", tmp_path / "afile"), "is a file: pass a folder")
    assert_bad_input(invoke("predict", runs["multi"], rgb, "--out", tmp_path / "afile" / "sub"), "a file is in the way")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the NYUv2 reference samples in ../shared (absent here)")
def test_predict_on_a_real_nyuv2_frame_with_ground_truth(runs, tmp_path):
    out = tmp_path / "real"
    result = invoke("predict", runs["multi"], SHARED / "000433.png", "--depth", SHARED / "depth_gt_000433.png",
                    "--labels", SHARED / "segm_gt_000433.png", "--out", out)
    assert result.exit_code == 0, result.output
    assert np.load(out / "000433_depth.npy").shape == (64, 64)
    with Image.open(out / "000433_grid.png") as im:
        grid = np.array(im.convert("RGB"))
    assert grid.shape[1] > 3 * 64


def test_guided_attention_figures(tmp_path):
    run = tmp_path / "mtinet"
    result = invoke("run", "--model", "mtinet", "--task", "depth,seg", *TINY, "--run-dir", run)
    assert result.exit_code == 0, result.output
    result = invoke("eval", run, "--figures", "1")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "figures").iterdir())
    assert len(names) == 4 and names[0] == "curves.png" and names[3] == "weights.png"  # weights: fixed's 1s
    assert names[1].endswith(".png") and names[2] == names[1].replace(".png", "_attention.png")
    rgb, _, _, _ = _frame_png(tmp_path)
    result = invoke("predict", run, rgb, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "p" / "frame_attention.png") as im:
        assert im.size[0] > 2 * 64  # the image and one panel per guidance module
