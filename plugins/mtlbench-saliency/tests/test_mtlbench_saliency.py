"""The saliency plugin: its metric against a hand count, its loss, its dataset, and that it
trains beside the built-in tasks through the public CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mtlbench_saliency", reason="the mtlbench-saliency plugin is not installed")

from mtlbench_saliency import IGNORE, SaliencyBCE, SaliencyMetrics, salient_mask  # noqa: E402

from mtlbench.testing import check_dataset  # noqa: E402


def test_maxf_against_a_hand_count():
    # 6 labelled pixels (one ignored): positives at 0, 1, 2; probabilities as below
    pred = torch.tensor([0.9, 0.6, 0.3, 0.7, 0.1, 0.2, 0.95]).view(1, 1, 1, 7)
    target = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, IGNORE]).view(1, 1, 1, 7)
    m = SaliencyMetrics(thresholds=(0.25, 0.5, 0.8))
    m.update(pred, {"saliency": target})
    out = m.compute()
    # t=0.25: predicted {0,1,2,3}: P 3/4 R 1 ; t=0.5: {0,1,3}: P 2/3 R 2/3 ; t=0.8: {0}: P 1 R 1/3
    def f(p, r):
        return 1.3 * p * r / (0.3 * p + r)
    expected = max(f(3 / 4, 1.0), f(2 / 3, 2 / 3), f(1.0, 1 / 3))
    assert out["maxf"] == pytest.approx(expected, abs=1e-12)
    assert out["maxf_threshold"] == pytest.approx(0.25)
    mae = (0.1 + 0.4 + 0.7 + 0.7 + 0.1 + 0.2) / 6
    assert out["mae"] == pytest.approx(mae, abs=1e-7)  # float32 probabilities


def test_masks_mark_objects_and_keep_ignored_pixels():
    seg = torch.tensor([[0, 1, 4, 255]], dtype=torch.uint8)  # wall, floor, chair (NYU-40 id 4), unlabelled
    assert salient_mask(seg, 255).tolist() == [[0.0, 0.0, 1.0, float(IGNORE)]]


def test_loss_is_the_mean_bce_over_labelled_pixels():
    logits = torch.tensor([2.0, -1.0, 0.5]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.0, IGNORE]).view(1, 1, 1, 3)
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(-1.0)))) / 2
    assert SaliencyBCE()(logits, {"saliency": target}).item() == pytest.approx(expected.item(), abs=1e-6)


def test_dataset_passes_the_contract_kit(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLBENCH_CACHE", str(tmp_path))
    check_dataset("salrooms", root=str(tmp_path), size=32, frames=12)


@pytest.mark.slow
def test_trains_beside_depth_seg_edge(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mtlbench", "run", "--model", "hps", "--task", "depth,seg,edge,saliency",
           "--data", "salrooms", "--preset", "quick", "--frames", "40", "--epochs", "1", "--size", "64",
           "--data-root", str(tmp_path / "cache"), "--run-dir", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert set(metrics) >= {"depth", "seg", "edge", "saliency"}
    assert 0.0 <= metrics["saliency"]["maxf"] <= 1.0 and 0.0 <= metrics["saliency"]["mae"] <= 1.0


def test_saliency_can_guide_depth_in_mtinets_task_graph():
    from mtlbench.api import task_graph
    from mtlbench.models.multitask import POINTS

    edges, off = task_graph(["saliency->depth", "seg->saliency"], ["depth", "seg", "saliency"], POINTS)
    assert [e.label() for e in edges] == ["saliency→depth", "seg→saliency"] and off == []
