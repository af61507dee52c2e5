from __future__ import annotations

import pytest
import torch

from mtlbench.config import RunConfig
from mtlbench.engine.build import check_names
from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.models.smp_baselines import copy_encoder_weights, smp_architectures, smp_model
from mtlbench.registry import LOSSES, MODELS, TASKS
from mtlbench.tasks import DatasetInfo, build_tasks

INFO = DatasetInfo(num_classes=40, max_depth=10.0)
SMP = ["smp_unet", "smp_fpn", "smp_deeplabv3plus"]

EDGES = [TASKS.build("edge", DatasetInfo())]  # the pipeline derives edge targets for the edge task


def build(model: str, *tasks: str, width: int = 16):
    torch.manual_seed(0)
    return MODELS.build(model, build_tasks(tasks, INFO), build_backbone("test_resnet", width=width))


@pytest.mark.parametrize("backbone", ["test_resnet", "test_convnext"])
@pytest.mark.parametrize("model", SMP)
@pytest.mark.parametrize("task, channels", [("depth", 1), ("seg", 40), ("normals", 3)])
def test_output_is_one_task_at_the_input_size(model, task, channels, backbone):
    torch.manual_seed(0)
    net = MODELS.build(model, build_tasks((task,), INFO), build_backbone(backbone, width=16)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
    assert list(out) == [task]
    assert out[task].shape == (2, channels, 64, 96)
    assert out[task].dtype == torch.float32


def test_depth_head_has_no_activation():
    # a regression head: outputs are not squashed into (0, 1) or [0, inf)
    net = build("smp_unet", "depth").eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 64, 64))["depth"]
    assert (y < 0).any() and (y > 0).any()


@pytest.mark.parametrize("model", SMP)
def test_registered_for_the_dense_tasks_but_edges(model):
    assert tuple(MODELS.entry(model).meta["tasks"]) == ("depth", "seg", "normals")


@pytest.mark.parametrize("model", SMP)
@pytest.mark.parametrize("tasks", [("depth", "seg"), ("seg", "depth", "edge"), ("edge",)],
                         ids=["depth+seg", "all", "edge"])
def test_more_than_one_task_or_edge_is_one_line_error(model, tasks):
    with pytest.raises(MtlbenchError) as info:
        build(model, *tasks)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"model {model} is a single-task baseline: pass one of depth, seg")


def test_check_names_rejects_edge_before_building():
    cfg = RunConfig()
    cfg.model.name, cfg.tasks = "smp_fpn", ["edge"]
    with pytest.raises(MtlbenchError, match="model smp_fpn cannot serve task edge: it serves depth, seg"):
        check_names(cfg)


def test_unknown_architecture_is_one_line_error_with_a_suggestion():
    assert {"unet", "fpn", "deeplabv3plus"} <= set(smp_architectures())
    with pytest.raises(MtlbenchError) as info:
        smp_model("unett", build_tasks(("depth",), INFO), build_backbone("test_resnet", width=16))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown smp architecture 'unett': did you mean 'unet'")
    assert "deeplabv3plus" in message


def test_generic_factory_builds_another_architecture():
    net = smp_model("linknet", build_tasks(("seg",), INFO), build_backbone("test_resnet", width=16)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64))["seg"].shape == (1, 40, 64, 64)


def test_encoder_starts_from_the_backbone_weights():
    torch.manual_seed(0)
    backbone = build_backbone("test_resnet", width=16)
    with torch.no_grad():  # make the backbone's weights recognisable
        for p in backbone.encoder.parameters():
            p.add_(1.0)
    net = MODELS.build("smp_unet", build_tasks(("depth",), INFO), backbone)
    source = backbone.encoder.state_dict()
    target = net.net.encoder.model.state_dict()
    assert set(source) == set(target)
    for k, v in source.items():
        assert torch.equal(v, target[k]), k
    assert "90/90 encoder tensors copied from backbone test_resnet" in net.notes[0]
    # copies, not shared tensors: the backbone object is not part of the model
    assert all(p.data_ptr() != q.data_ptr() for p in backbone.parameters() for q in net.parameters())


def test_copy_encoder_weights_skips_mismatched_shapes():
    src = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 5, 1))
    dst = torch.nn.Module()
    dst.model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 6, 1))
    copied, total = copy_encoder_weights(src, dst)
    assert (copied, total) == (2, 4)
    assert torch.equal(dst.model[0].weight, src[0].weight)
    assert not torch.equal(dst.model[1].bias[:5], src[1].bias)


@pytest.fixture(scope="module")
def batch():
    from mtlbench.data.datasets import build_dataset
    from mtlbench.data.pipeline import BatchPipeline

    ds = build_dataset("synthrooms", split="train", size=64, frames=20)
    return BatchPipeline(torch.device("cpu"), 64, augment=False, tasks=EDGES)(ds.batch(range(4)), train=False)


@pytest.mark.parametrize("model, task, loss", [("smp_unet", "depth", "structured_depth"),
                                               ("smp_fpn", "seg", "cross_entropy"),
                                               ("smp_deeplabv3plus", "depth", "l1_depth")])
@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss(batch, model, task, loss):
    net = build(model, task).train()
    criterion = LOSSES.build(loss, DatasetInfo())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        value = criterion(net(batch["image"])[task], batch)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.75 * losses[0], losses
