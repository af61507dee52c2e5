from __future__ import annotations

import itertools

import pytest
import torch

from mtlbench.errors import MtlbenchError, UnknownNameError
from mtlbench.models.backbones import build_backbone
from mtlbench.models.interactions import GuidedAttention
from mtlbench.registry import MODELS
from mtlbench.tasks import DatasetInfo, build_tasks

SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(("depth", "seg", "edge"), r)]
INFO = DatasetInfo(num_classes=40, max_depth=10.0)


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 96)


@pytest.mark.parametrize("model", ["mtinet", "hps"])
@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_output_shapes_for_every_task_subset(model, subset, x):
    tasks = build_tasks(subset, INFO)
    net = MODELS.build(model, tasks, build_backbone("test_resnet", width=16))
    out = net(x)
    assert set(out) == set(subset) | {"shared"}  # training mode: the encoder features too
    channels = {"depth": 1, "seg": 40, "edge": 1}
    for t in subset:
        y = out[t]
        assert y.shape == (2, channels[t], 64, 96), t


def test_mtinet_guidance_follows_the_requested_tasks():
    backbone = build_backbone("test_resnet", width=16)
    full = MODELS.build("mtinet", build_tasks(("depth", "seg", "edge"), INFO), backbone)
    assert sorted(full.guidance.keys()) == ["edge_to_depth", "seg_to_depth"]
    assert full.notes == ["interaction guided_attention (dim=64, heads=1, grid=16)",
                          "guidance at stride 16: seg→depth, edge→depth"]
    partial = MODELS.build("mtinet", build_tasks(("depth", "seg"), INFO), build_backbone("test_resnet", width=16))
    assert list(partial.guidance.keys()) == ["seg_to_depth"]
    assert partial.notes[-1] == "edge→depth guidance: off (edge not requested)"
    hps = MODELS.build("hps", build_tasks(("depth", "seg", "edge"), INFO), build_backbone("test_resnet", width=16))
    assert len(hps.guidance) == 0


def test_guidance_changes_depth_but_not_segmentation():
    torch.manual_seed(0)
    tasks = build_tasks(("depth", "seg"), INFO)
    net = MODELS.build("mtinet", tasks, build_backbone("test_resnet", width=16)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        torch.nn.init.normal_(net.guidance["seg_to_depth"].out.weight)
        after = net(x)
    assert not torch.allclose(before["depth"], after["depth"])
    torch.testing.assert_close(before["seg"], after["seg"])


def test_guided_attention_matches_an_explicit_computation():
    torch.manual_seed(0)
    ga = GuidedAttention(channels=6, dim=4, heads=1, grid=2)
    target, source = torch.randn(1, 6, 3, 5), torch.randn(1, 6, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(source, 2)  # 4×4 → the 2×2 grid
    q = ga.query(target).flatten(2).transpose(1, 2)  # 15×4
    k = ga.key(pooled).flatten(2).transpose(1, 2)  # 4×4
    v = ga.value(pooled).flatten(2).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1)  # sqrt(d_k) = 2
    attended = (weights @ v).transpose(1, 2).reshape(1, 4, 3, 5)
    expected = target + ga.out(attended)
    torch.testing.assert_close(ga(target, source), expected, rtol=1e-5, atol=1e-5)


def test_image_size_must_fit_the_backbone():
    backbone = build_backbone("test_resnet", width=16)
    backbone.check_size((64, 64))
    with pytest.raises(MtlbenchError,
                       match=r"image size 100x100 does not fit backbone test_resnet \(total stride 32\): "
                             r"use a multiple of 32 for data.size, e.g. 96 or 128"):
        backbone.check_size((100, 100))


def test_unknown_backbone_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'resnet50'"):
        build_backbone("resnet5O")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(MtlbenchError, match="weights file .*nope.pth not found"):
        build_backbone("test_resnet", weights=str(tmp_path / "nope.pth"))


def test_weights_file_is_loaded(tmp_path):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("test_resnet")
    path = tmp_path / "test_resnet.pth"
    torch.save(reference.state_dict(), path)
    loaded = build_backbone("test_resnet", width=8, weights=str(path)).encoder.state_dict()
    random = build_backbone("test_resnet", width=8).encoder.state_dict()
    ref = reference.state_dict()
    shared = [k for k in loaded if k in ref and k.endswith("weight")]
    assert len(shared) > 10
    for k in shared:
        torch.testing.assert_close(loaded[k], ref[k])
    assert any(not torch.equal(random[k], ref[k]) for k in shared)


def test_pretrained_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # as on a machine without network; the variable is read at import, so patch the constant
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MtlbenchError, match="could not load pretrained weights for test_resnet from the timm hub"):
        build_backbone("test_resnet", pretrained=True)
