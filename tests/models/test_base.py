"""The model contract every built-in model follows (mtlbench.models.base)."""

from __future__ import annotations

import pytest
import torch

from mtlbench.models.backbones import build_backbone
from mtlbench.models.base import AUX, SHARED, MultiTaskModel, capture_attention
from mtlbench.registry import MODELS
from mtlbench.tasks import DatasetInfo, build_tasks

INFO = DatasetInfo(num_classes=5, max_depth=10.0)
MULTI = ["mtinet", "hps", "padnet", "cross_stitch", "mtan", "mtinet_eccv20", "fcn", "refinenet", "papnet", "context"]


def build(name: str, tasks=("depth", "seg", "edge"), **options):
    torch.manual_seed(0)
    entry = MODELS.entry(name)
    opts = {k: o.default for k, o in entry.options.items()} | options
    return entry.obj(build_tasks(tasks, INFO), build_backbone("test_resnet", width=16), **opts)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_is_a_multitask_model(name):
    tasks = ("seg",) if MODELS.entry(name).meta.get("single_task") else ("depth", "seg")
    if name.startswith("smp_"):
        pytest.importorskip("segmentation_models_pytorch", reason="smp models need segmentation-models-pytorch")
    net = build(name, tasks)
    assert isinstance(net, MultiTaskModel)
    assert net.task_names == list(tasks)
    shared = {id(p) for p in net.shared_parameters()}
    assert shared, "a model shares something between its tasks"
    for t in tasks:
        own = {id(p) for p in net.task_parameters(t)}
        assert own and not own & shared, f"{t}'s branch and the shared parameters overlap"
    with pytest.raises(KeyError, match="normals"):
        net.task_parameters("normals")


@pytest.mark.parametrize("name", MULTI)
def test_output_contract_in_training_and_evaluation(name, x):
    net = build(name)
    out = net.train()(x)
    tasks = {"depth", "seg", "edge"}
    assert tasks <= set(out) <= tasks | {AUX, SHARED}
    if SHARED in out:  # models with one encoder expose what the heads were computed from
        # (context: its three input scales' stride-16 maps, concatenated)
        assert [f.shape[1] for f in out[SHARED]] == ([3 * 16] if name == "context" else [16] * 4)
    for extra in out.get(AUX, []):
        assert set(extra) <= tasks
    with torch.no_grad():
        assert set(net.eval()(x)) == tasks


def test_hps_task_losses_reach_their_own_branch_and_the_shared_encoder_only(x):
    net = build("hps")
    out = net.train()(x)
    for t in net.task_names:
        net.zero_grad(set_to_none=True)
        out[t].float().mean().backward(retain_graph=True)
        for s in net.task_names:
            reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.task_parameters(s)]
            assert any(reached) == (s == t), (t, s)
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.shared_parameters())


def test_capture_attention_reads_guided_attention_through_hooks(x):
    net = build("mtinet").eval()
    assert not any(m._forward_hooks for m in net.modules())
    with torch.no_grad(), capture_attention(net) as maps:
        net(x)
    assert set(maps) == {"guidance.seg_to_depth", "guidance.edge_to_depth"}
    att = maps["guidance.seg_to_depth"]
    assert att.shape == (2, 1, 16, 16)  # B × heads × (4×4 stride-16 queries) × (4×4 keys)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 1, 16))  # a softmax over the keys
    assert not any(m._forward_hooks for m in net.modules())  # nothing left hooked


def test_capture_attention_reads_mtinet_eccv20_task_masks(x):
    net = build("mtinet_eccv20", ("depth", "seg")).eval()
    with torch.no_grad(), capture_attention(net) as maps:
        net(x)
    assert sorted(maps) == ["fpm.0", "fpm.1", "fpm.2"]
    masks = maps["fpm.0"]  # B × target × source × H × W, a softmax over the source tasks
    assert masks.shape[:3] == (2, 2, 2)
    torch.testing.assert_close(masks.sum(2), torch.ones_like(masks[:, :, 0]))
