from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mtlbench.engine.trainer import task_losses
from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.models.base import capture_attention
from mtlbench.models.mtinet_eccv20 import FeaturePropagation, MultiModalDistillation
from mtlbench.registry import MODELS
from mtlbench.registry import TASKS as TASK_ENTRIES
from mtlbench.tasks import DatasetInfo, build_tasks

TASKS = ("depth", "seg", "edge")
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(TASKS, r)]
INFO = DatasetInfo(num_classes=40, max_depth=10.0)
CHANNELS = {"depth": 1, "seg": 40, "edge": 1}

EDGES = [TASK_ENTRIES.build("edge", DatasetInfo())]  # the pipeline derives edge targets for the edge task


def build(subset=TASKS, backbone="test_resnet", **options):
    torch.manual_seed(0)
    return MODELS.build("mtinet_eccv20", build_tasks(tuple(subset), INFO), build_backbone(backbone, width=16),
                        **options)


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet"])
@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_output_shapes_for_every_task_subset(backbone, subset, x):
    assert build_backbone(backbone, width=16).strides == [4, 8, 16, 32]
    net = build(subset, backbone)
    out = net(x)  # training mode
    assert set(out) == set(subset) | {"aux", "shared"}
    for t in subset:
        assert out[t].shape == (2, CHANNELS[t], 64, 64), t
    assert len(out["aux"]) == 4
    for k, scale in enumerate(out["aux"]):  # finest first: strides 4, 8, 16, 32
        assert set(scale) == set(subset)
        side = 64 // 2 ** (k + 2)
        for t, y in scale.items():
            assert y.shape == (2, CHANNELS[t], side, side), (k, t)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert set(out) == set(subset)
    for t in subset:
        assert out[t].shape == (2, CHANNELS[t], 64, 64), t


def test_aux_holds_the_initial_prediction_of_every_scale(x):
    net = build()
    captured: dict[tuple[int, str], torch.Tensor] = {}
    for k, module in enumerate(net.initial):
        for t, conv in module.predict.items():
            conv.register_forward_hook(lambda m, i, o, key=(k, t): captured.__setitem__(key, o))
    out = net(x)
    assert len(out["aux"]) == 4
    for k in range(4):
        for t in TASKS:
            assert out["aux"][k][t] is captured[(k, t)]
    assert "aux" not in net.eval()(x)


def test_deep_supervision_adds_one_loss_term_per_scale(x):
    net = build()
    out = net(x)
    calls = {t: 0 for t in TASKS}

    def mean_loss(task):
        def fn(y, batch):
            calls[task] += 1
            return y.float().mean()
        return fn

    result = task_losses({t: mean_loss(t) for t in TASKS}, out, {})
    for t in TASKS:
        assert calls[t] == 1 + 4  # the final prediction and one initial prediction per scale
        expected = out[t].mean()
        for scale in out["aux"]:
            expected = expected + F.interpolate(scale[t], size=(64, 64), mode="bilinear",
                                                align_corners=False).mean()
        torch.testing.assert_close(result[t], expected)
    # a constant loss makes the count visible in the value itself
    ones = task_losses({t: (lambda y, b: torch.ones(())) for t in TASKS}, out, {})
    assert all(float(v) == 5.0 for v in ones.values())
    net.eval()
    with torch.no_grad():
        ones = task_losses({t: (lambda y, b: torch.ones(())) for t in TASKS}, net(x), {})
    assert all(float(v) == 1.0 for v in ones.values())


@pytest.mark.parametrize("subset", [TASKS, ("depth", "edge"), ("seg",)], ids=lambda s: "+".join(s))
def test_fpm_masks_sum_to_one_over_tasks_at_every_pixel(subset, x):
    net = build(subset)
    with capture_attention(net) as maps:
        net(x)
    assert len(net.fpm) == 3 and sorted(maps) == ["fpm.0", "fpm.1", "fpm.2"]
    for k in range(3):  # fpm[k] works on scale k+1 and feeds scale k
        side = 64 // 2 ** (k + 3)
        masks = maps[f"fpm.{k}"]  # B × target × source × H × W
        assert masks.shape == (2, len(subset), len(subset), side, side), k
        for i in range(len(subset)):
            m = masks[:, i]
            assert (m >= 0).all()
            torch.testing.assert_close(m.sum(1), torch.ones(2, side, side))
            if len(subset) == 1:
                assert (m == 1).all()


def test_fpm_matches_an_explicit_computation():
    torch.manual_seed(0)
    names = ["depth", "seg", "edge"]
    fpm = FeaturePropagation(names, channels=8, se_reduction=4).eval()
    feats = {t: torch.randn(2, 8, 5, 6) for t in names}
    with torch.no_grad():
        out = fpm(feats)
        shared = fpm.shared(torch.cat([feats[t] for t in names], 1))
        for t in names:
            logits = fpm.mask_logits[t](shared)  # 2×3×5×6
            w = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
            mixed = sum(w[:, i:i + 1] * feats[s] for i, s in enumerate(names))
            fc1, fc2 = fpm.se[t].fc[0], fpm.se[t].fc[2]
            gate = torch.sigmoid(fc2(torch.relu(fc1(mixed.mean((2, 3))))))
            expected = feats[t] + mixed * gate[:, :, None, None]
            torch.testing.assert_close(out[t], expected, rtol=1e-5, atol=1e-5)


def test_distillation_matches_the_pad_net_formula_and_is_identity_for_one_task():
    torch.manual_seed(0)
    names = ["depth", "seg", "edge"]
    md = MultiModalDistillation(names, channels=4)
    feats = {t: torch.randn(1, 4, 6, 6) for t in names}
    with torch.no_grad():
        out = md(feats)
        for t in names:
            expected = feats[t].clone()
            for s in names:
                if s != t:
                    m = md.messages[f"{s}_to_{t}"]
                    expected += torch.sigmoid(m.attention(feats[s])) * m.message(feats[s])
            torch.testing.assert_close(out[t], expected, rtol=1e-5, atol=1e-5)
    single = MultiModalDistillation(["seg"], channels=4)
    assert len(single.messages) == 0
    assert torch.equal(single({"seg": feats["seg"]})["seg"], feats["seg"])


def test_features_propagate_from_coarse_to_fine(x):
    net = build().eval()
    with torch.no_grad():
        net.train()
        for m in net.modules():  # training mode for "aux", but frozen batch-norm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        before = net(x)["aux"]
        torch.nn.init.normal_(net.fpm[1].mask_logits["seg"].weight)  # scale 2 → scale 1, into seg
        torch.nn.init.normal_(net.fpm[1].se["seg"].fc[0].weight)
        after = net(x)["aux"]
    for k in (2, 3):  # coarser than the changed FPM's target: untouched
        for t in TASKS:
            torch.testing.assert_close(before[k][t], after[k][t])
    assert not torch.allclose(before[1]["seg"], after[1]["seg"])
    assert not torch.allclose(before[0]["seg"], after[0]["seg"])
    torch.testing.assert_close(before[1]["depth"], after[1]["depth"])  # FPM output per task


def test_user_errors_are_one_line_mtlbench_errors():
    with pytest.raises(MtlbenchError, match="at least one task"):
        MODELS.build("mtinet_eccv20", {}, build_backbone("test_resnet", width=16))
    with pytest.raises(MtlbenchError, match=r"se_reduction \(model mtinet_eccv20\): must be at least 1, got 0"):
        build(se_reduction=0)
    with pytest.raises(MtlbenchError, match="se_reduction.*expected an integer"):
        build(se_reduction=2.5)
    with pytest.raises(MtlbenchError, match="takes no option 'se_reduce'; did you mean 'se_reduction'"):
        build(se_reduce=2)


@pytest.mark.slow
def test_model_trains_on_synthrooms():
    from mtlbench.data.datasets import build_dataset
    from mtlbench.data.pipeline import BatchPipeline
    from mtlbench.registry import LOSSES

    ds = build_dataset("synthrooms", split="train", size=64, frames=20)
    batch = BatchPipeline(torch.device("cpu"), 64, augment=False, tasks=EDGES)(ds.batch(range(4)), train=False)
    net = build()
    losses = {"depth": LOSSES.build("structured_depth", ds.info), "seg": LOSSES.build("cross_entropy", ds.info),
              "edge": LOSSES.build("balanced_bce", ds.info)}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    totals = []
    for _ in range(15):
        out = net(batch["image"])
        assert len(out["aux"]) == 4
        total = sum(task_losses(losses, out, batch).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert all(torch.isfinite(torch.tensor(totals)))
    assert totals[-1] < 0.9 * totals[0], totals
