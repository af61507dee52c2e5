"""The comparison systems of Beneath the Surface: FCN, RefineNet (and light-weight), PAP-Net, Context."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.models.base import AUX
from mtlbench.models.beneath_systems import CRP, RCU, Affinity, propagate
from mtlbench.registry import INTERACTIONS, MODELS
from mtlbench.tasks import DatasetInfo, build_tasks

ALL = ("depth", "seg", "edge", "normals")
SUBSETS = [c for r in (1, 2, 4) for c in itertools.combinations(ALL, r)]
INFO = DatasetInfo(num_classes=40, max_depth=10.0)
CHANNELS = {"depth": 1, "seg": 40, "edge": 1, "normals": 3}
SYSTEMS = [("fcn", {}), ("refinenet", {}), ("refinenet", {"light": True}), ("papnet", {}), ("context", {})]


def build(model: str, subset=ALL, backbone: str = "test_resnet", **options) -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build(model, build_tasks(tuple(subset), INFO), build_backbone(backbone, width=16), **options)


@pytest.mark.parametrize("backbone", ["test_resnet", "test_convnext", "test_efficientnet"])
@pytest.mark.parametrize("model, options", SYSTEMS)
def test_output_shapes_for_task_subsets(model, options, backbone):
    x = torch.randn(2, 3, 64, 96)
    for subset in SUBSETS:
        net = build(model, subset, backbone, **options).eval()
        with torch.no_grad():
            out = net(x)
        assert set(out) == set(subset), (model, subset)
        for t, y in out.items():
            assert y.shape == (2, CHANNELS[t], 64, 96) and torch.isfinite(y).all(), (model, backbone, t)


@pytest.mark.parametrize("model, paper", [("fcn", "Long et al., CVPR 2015"), ("refinenet", "Lin et al., CVPR 2017"),
                                          ("papnet", "Zhang et al., CVPR 2019"), ("context", "Lin et al., CVPR 2016")])
def test_registered_for_every_task_with_their_papers(model, paper):
    entry = MODELS.entry(model)
    assert "tasks" not in entry.meta and paper in entry.summary  # any task whose head kind it decodes
    with pytest.raises(MtlbenchError, match=rf"^model {model} needs at least one task"):
        MODELS.build(model, {}, build_backbone("test_resnet", width=16))
    backbone = build_backbone("test_resnet", width=16)
    backbone.strides = [2, 4, 8, 16]
    with pytest.raises(MtlbenchError, match=rf"model {model} needs its last four scales at strides 4, 8, 16, 32"):
        MODELS.build(model, build_tasks(("depth",), INFO), backbone)


def test_fcn_is_torchvisions_head_with_skips_that_start_at_zero():
    from torchvision.models.segmentation.fcn import FCNHead

    net = build("fcn", ("depth", "seg")).eval()
    assert all(isinstance(h, FCNHead) for h in net.heads.values())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = net.backbone(x)
        out = net(x)
        # FCN-8s at initialisation: the stride-32 score upsampled, the zero skip scores adding nothing
        coarse = F.interpolate(F.interpolate(F.interpolate(net.heads["seg"](feats[3]), size=feats[2].shape[-2:],
                                                           mode="bilinear"), size=feats[1].shape[-2:],
                                             mode="bilinear"), size=(64, 64), mode="bilinear")
    torch.testing.assert_close(out["seg"], coarse)
    assert not any(p.abs().sum() for p in net.skip8.parameters())


def test_refinenet_and_its_light_weight_variant():
    full, light = build("refinenet"), build("refinenet", light=True)
    assert any(isinstance(m, RCU) for m in full.modules()) and not any(isinstance(m, RCU) for m in light.modules())
    crp_full = next(m for m in full.modules() if isinstance(m, CRP))
    crp_light = next(m for m in light.modules() if isinstance(m, CRP))
    assert [c.kernel_size for c in crp_full.convs] == [(3, 3)] * 2
    assert [c.kernel_size for c in crp_light.convs] == [(1, 1)] * 4
    assert sum(p.numel() for p in light.parameters()) < sum(p.numel() for p in full.parameters())
    decoder = {id(p) for p in full.decoder.parameters()}  # shared by the tasks, as the encoder is
    assert decoder <= {id(p) for p in full.shared_parameters()}


def test_chained_residual_pooling_sums_pooled_convolutions():
    crp = CRP(4, blocks=2, kernel=1)
    for conv, scale in zip(crp.convs, (1.0, 2.0)):
        nn.init.zeros_(conv.weight)
        conv.weight.data[:, :, 0, 0] = scale * torch.eye(4)
    x = torch.randn(1, 4, 8, 8)
    relu = F.relu(x)
    z1 = F.max_pool2d(relu, 5, stride=1, padding=2)
    z2 = 2.0 * F.max_pool2d(z1, 5, stride=1, padding=2)
    torch.testing.assert_close(crp(x), relu + z1 + z2)


def test_affinity_is_bounded_by_its_grid_and_propagation_keeps_a_constant():
    affinity = Affinity(8, dim=4, grid=2)
    x = torch.randn(1, 8, 6, 6)
    a = affinity(x)
    assert a.shape == (1, 36, 4)  # every position against at most grid² pooled ones
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 36))
    constant = torch.full((1, 8, 6, 6), 3.0)
    torch.testing.assert_close(propagate(a, constant, 2), constant)


def test_papnet_starts_without_propagation_and_supervises_its_initial_predictions():
    net = build("papnet", ("depth", "seg", "edge"))
    assert all(float(g.detach()) == 0 for g in net.gamma.values())
    weights = torch.softmax(net.mix, 1)
    assert torch.all(weights.diagonal() > weights.sum(1) - weights.diagonal())  # its own affinity first
    out = net.train()(torch.randn(2, 3, 64, 64))
    assert [set(a) for a in out[AUX]] == [{"depth", "seg", "edge"}]
    assert AUX not in net.eval()(torch.randn(1, 3, 64, 64))


def test_affinity_propagation_is_an_interaction_that_starts_as_the_identity():
    module = INTERACTIONS.build("affinity_propagation", 8)
    target, source = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(module(target, source), target)
    net = build("mtinet", ("depth", "seg", "edge"), interaction="affinity_propagation",
                guidance=["seg->depth", "edge->depth"])
    assert set(net.guidance) == {"seg_to_depth", "edge_to_depth"}


def test_context_runs_the_encoder_at_every_scale_and_pools_a_pyramid():
    net = build("context", ("seg",), scales=[1.0, 0.5])
    calls = []
    net.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    shared = net.encode(torch.randn(1, 3, 128, 96))
    assert calls == [(128, 96), (64, 64)]  # each scale a multiple of the stride, 32
    assert shared[0].shape == (1, 2 * 16, 8, 6)  # both scales' stride-16 maps, at the first's size
    with pytest.raises(MtlbenchError, match="the first 1.0"):
        build("context", ("seg",), scales=[0.5, 1.0])
