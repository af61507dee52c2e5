"""The contract test kit (mtlbench.testing) on every registered entry of each registry (built in
and installed plugins), and on broken implementations, each failing with the message that names
the promise it breaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.data.datasets import Arrays, DatasetSplits, DenseDataset
from mtlbench.errors import MtlbenchError
from mtlbench.losses import L1DepthLoss
from mtlbench.metrics import Metric
from mtlbench.models.backbones import build_backbone
from mtlbench.models.base import AUX, SHARED, MultiTaskModel
from mtlbench.registry import DATASETS, INTERACTIONS, LOSSES, MODELS, TASKS, WEIGHTINGS
from mtlbench.tasks import DatasetInfo, Task, build_tasks
from mtlbench.tasks.base import NORMALS_TARGET, RGBD_TARGETS
from mtlbench.testing import check_dataset, check_interaction, check_loss, check_model, check_task, check_weighting
from mtlbench.weighting import GradientWeighting, GramianWeighting, LossWeighting
from mtlbench.weighting.gradient import EXTRAS
from tests.conftest import SHARED as SHARED_DATA


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: one intra-op thread is fastest, and steady on a busy machine (as in tests/models)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", INTERACTIONS.names())
def test_every_registered_interaction_keeps_the_contract(name):
    # built-ins and the plugins installed here (CI installs those in plugins/)
    report = check_interaction(name, window=3) if name == "local_attention" else check_interaction(name)
    assert {"shape and dtype (float32)", "bf16 autocast", "state dict round trip",
            "gradients reach target, guide and every parameter"} <= set(report.passed)
    assert "torch.compile" in report.notes and "host syncs" in report.notes


class _Ignores(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, target, source):
        return target + self.proj(target)  # never looks at the guide


class _Shrinks(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1, stride=2)

    def forward(self, target, source):
        return self.proj(target + source)


class _Unused(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)
        self.spare = nn.Linear(2, 2)

    def forward(self, target, source):
        return target + self.proj(source)


class _NotIdentity(_Unused):
    def forward(self, target, source):
        return target + self.proj(source) + self.spare.weight.sum()


class _HiddenState(nn.Module):
    """Keeps a gain outside its state dict and changes it while training."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)
        self.gain = torch.ones(())  # a plain attribute: not saved, not loaded

    def forward(self, target, source):
        if self.training:
            self.gain = self.gain * 1.5
        return target + self.gain * self.proj(source)


@pytest.mark.parametrize("module, fragment, identity", [
    (_HiddenState, "state outside its state dict", False),
    (_Ignores, "no gradient reaches the guide", False),
    (_Shrinks, "not the target's shape", False),
    (_Unused, "parameters without gradient: spare.weight, spare.bias", False),
    (_NotIdentity, "not the identity at initialisation", True),
])
def test_a_broken_interaction_fails_naming_the_promise(module, fragment, identity):
    with pytest.raises(AssertionError, match=fragment):
        check_interaction(module, identity_at_init=identity)


def test_an_identity_promise_is_read_from_the_registration():
    assert "identity at initialisation" in check_interaction("affinity_propagation").passed
    assert "identity at initialisation" not in check_interaction("guided_attention").passed


# -- losses ------------------------------------------------------------------------------------------

LOSS_PROMISES = {"finite float32 scalar", "finite scalar from a bf16 prediction", "gradient reaches the prediction",
                 "deterministic under a seed", "a perfect prediction scores no more than a random one"}


BUILT_IN_TASKS = ("depth", "seg", "edge", "normals")


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_keeps_the_contract(name):
    task = LOSSES.entry(name).meta["task"]
    report = check_loss(name)  # for the task its registration names
    if task not in BUILT_IN_TASKS:
        # a plugin's task (saliency): the kit draws its target and checks what needs no knowledge of it
        assert set(report.passed) == LOSS_PROMISES - {"a perfect prediction scores no more than a random one"} | {
            "the batch left as it was"}
        assert report.notes["invalid pixels"].startswith(f"not checked: {task} is a ")
        assert report.notes["perfect prediction"] == report.notes["invalid pixels"]
        return
    # edge targets mark no pixel invalid; depth, seg and normals targets do
    masked = {"invalid pixels ignored", "finite on a batch with no valid pixel"}
    assert set(report.passed) == LOSS_PROMISES | {"the batch left as it was"} | (masked if task != "edge" else set())
    assert ("none" in report.notes["invalid pixels"]) == (task == "edge")


def test_a_loss_check_forwards_options_and_takes_a_factory_and_the_dataset_info():
    assert "invalid pixels ignored" in check_loss("structured_depth", beta=0.0, gamma=0.5).passed
    # the ignore label is the dataset's (NYUv2's 894 classes: 65535), not a fixed 255
    info = DatasetInfo(num_classes=7, ignore_index=65535)
    assert "invalid pixels ignored" in check_loss("cross_entropy", info=info).passed
    assert check_loss(lambda info: L1DepthLoss(info.max_depth), "depth").name == "<lambda>"
    with pytest.raises(ValueError, match="name the task the loss is for"):
        check_loss(lambda info: L1DepthLoss(info.max_depth))


def _masked_l1(pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
    valid = batch["depth"] > 0
    return (pred.float() - batch["depth"] / 10.0)[valid].abs().mean()


class _UnmaskedL1(nn.Module):
    def forward(self, pred, batch):
        return (pred.float() - batch["depth"] / 10.0).abs().mean()  # invalid depth (0) read as a target


class _IgnoreLabelAsClass(nn.Module):
    def forward(self, logits, batch):
        return F.cross_entropy(logits.float(), batch["seg"].clamp(max=logits.shape[1] - 1))


class _UnmaskedNormals(nn.Module):
    def forward(self, pred, batch):
        return (F.normalize(pred.float(), dim=1) - batch["normals"]).abs().mean()


class _StraightThrough(nn.Module):
    def forward(self, pred, batch):  # the value is masked, the gradient is not
        leak = pred.float()[batch["depth"].expand_as(pred) == 0].sum()
        return _masked_l1(pred, batch) + leak - leak.detach()


class _PerPixel(nn.Module):
    def forward(self, pred, batch):
        return (pred.float() - batch["depth"] / 10.0).abs()


class _Detached(nn.Module):
    def forward(self, pred, batch):
        return _masked_l1(pred.detach(), batch)


class _Double(nn.Module):
    def forward(self, pred, batch):
        return _masked_l1(pred, batch).double()


class _Noisy(nn.Module):
    def forward(self, pred, batch):
        return _masked_l1(pred, batch) + 1e-3 * torch.rand(())


class _EditsItsTarget(nn.Module):
    def forward(self, pred, batch):
        batch["depth"].clamp_(max=5.0)  # a cap written into the batch the other losses read
        return _masked_l1(pred, batch)


class _MeanOverNoPixel(nn.Module):
    def forward(self, pred, batch):
        valid = batch["depth"] > 0
        return (pred.float() - batch["depth"] / 10.0)[valid].abs().mean()  # NaN when nothing is valid


class _Rewards(nn.Module):
    def forward(self, pred, batch):
        return -_masked_l1(pred, batch)  # larger the closer the prediction


def _factory(cls: type[nn.Module]):
    def factory(info: DatasetInfo) -> nn.Module:
        return cls()
    factory.__name__ = cls.__name__
    return factory


@pytest.mark.parametrize("module, task, fragment", [
    (_UnmaskedL1, "depth", r"the loss changes where the depth target marks pixels invalid \(depth 0\)"),
    (_IgnoreLabelAsClass, "seg", r"the loss changes where the seg target marks pixels invalid \(the ignore label\)"),
    (_UnmaskedNormals, "normals", r"the loss changes where the normals target marks pixels invalid \(the zero vector"),
    (_StraightThrough, "depth", "the prediction receives gradient where the depth target marks pixels invalid"),
    (_PerPixel, "depth", r"forward returned \(2, 1, 12, 16\), not a scalar"),
    (_Detached, "depth", "no gradient reaches the prediction"),
    (_Double, "depth", r"not a finite float32 scalar for a float32 prediction: .* \(torch.float64\)"),
    (_Noisy, "depth", "not deterministic: called twice"),
    (_Rewards, "depth", r"a perfect depth prediction scores -?0, more than a random one \(-0\.\d+\)"),
    (_EditsItsTarget, "depth", r"forward edits the batch in place \(depth\)"),
    (_MeanOverNoPixel, "depth", r"not finite on a batch with no valid depth pixel \(nan\)"),
])
def test_a_broken_loss_fails_naming_the_promise(module, task, fragment):
    with pytest.raises(AssertionError, match=rf"^{module.__name__}: {fragment}"):
        check_loss(_factory(module), task)


# -- weightings ----------------------------------------------------------------------------------------

def _available(name: str) -> None:
    """Skip, saying why, when the solver ``name`` needs (``mtlbench[solvers]``) is not installed."""
    solver = WEIGHTINGS.entry(name).meta.get("solver")
    if solver:
        for module in EXTRAS[solver][0]:
            pytest.importorskip(module, reason=f"{name} needs {EXTRAS[solver][1]}, not installed")


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_registered_weighting_keeps_the_contract(name):
    _available(name)
    report = check_weighting(name)
    level = WEIGHTINGS.entry(name).meta["level"]
    built = WEIGHTINGS.build(name, ["depth", "seg", "edge"])
    promises = {f"a {level}-level Weighting", "finite total, gradients and weights", "every task reaches the step",
                "state dict round trip", "deterministic under a seed", "loss scale"}
    # what `applied` promises, where the class promises it
    if isinstance(built, LossWeighting):
        promises.add("applied weights give the gradients of Σ_t applied_t·L_t")
    elif isinstance(built, GramianWeighting) and built.through == "parameters":
        promises.add("applied weights give the shared gradient Σ_t applied_t·g_t")
    assert set(report.passed) == promises


def test_a_weighting_check_forwards_options():
    # weights 0 for edge: the method itself drops a task, and the check says so
    assert "every task reaches the step" in check_weighting("fixed", weights={"depth": 2.0}).passed
    with pytest.raises(AssertionError, match="^fixed: step 1 ignores task edge: its head receives no gradient"):
        check_weighting("fixed", weights={"edge": 0.0})
    assert "loss scale" in check_weighting("pcgrad", tasks=("a", "b"), through="representation").passed


class _DropsLast(LossWeighting):
    def combine(self, losses):
        return sum(losses[t] for t in self.tasks[:-1])


class _MergesAllButLast(GradientWeighting):
    def aggregate(self, jacobian):
        return jacobian[:-1].sum(0)


class _ForgetsItsState(LossWeighting):
    """Each loss over an average of its past values, kept in a plain attribute: no checkpoint has it."""

    def __init__(self, tasks):
        super().__init__(tasks)
        self.average = None

    def combine(self, losses):
        v = self.vector(losses)
        self.average = v.detach() if self.average is None else 0.5 * (self.average + v.detach())
        return (v / self.average).sum()


class _Unseeded(LossWeighting):
    def __init__(self, tasks):
        super().__init__(tasks)
        # drawn from numpy's unseeded generator, not torch's: two builds under one seed differ
        self.register_buffer("w", torch.from_numpy(np.random.default_rng().uniform(0.5, 2.0, len(self.tasks))).float())

    def combine(self, losses):
        return (self.w * self.vector(losses)).sum()


class _IgnoresTheLossScale(LossWeighting):
    def combine(self, losses):
        return self.vector(losses).sum()

    def backward(self, losses, model, shared=None, scale=1.0):
        return super().backward(losses, model, shared)


class _MisreportsItsWeights(GramianWeighting):
    def weigh(self, gramian):
        return torch.ones(len(gramian))

    def aggregate(self, jacobian):
        self.applied = self.weigh(jacobian @ jacobian.t())
        return jacobian.sum(0) + jacobian[0]  # the first task counted twice


class _NaNTotal(LossWeighting):
    def combine(self, losses):
        return self.vector(losses).sum() * float("nan")


def _not_a_weighting(tasks):
    return nn.Linear(2, 2)


@pytest.mark.parametrize("factory, fragment", [
    (_DropsLast, "step 1 ignores task edge: its head receives no gradient"),
    (_MergesAllButLast, "step 1 ignores task edge: the shared layer's gradient has nothing of it"),
    (_ForgetsItsState, "resumed from its state dict after two epochs, it continues otherwise"),
    (_Unseeded, "not deterministic under a seed"),
    (_IgnoresTheLossScale, "under the loss scale 8"),
    (_MisreportsItsWeights, r"step 1 wrote into backbone.0.weight other than the shared gradient Σ_t applied_t·g_t"),
    (_NaNTotal, r"step 1 returned the total tensor\(nan\), not a finite scalar"),
    (_not_a_weighting, r"the factory returned Linear, not a Weighting"),
])
def test_a_broken_weighting_fails_naming_the_promise(factory, fragment):
    with pytest.raises(AssertionError, match=rf"^{factory.__name__}: {fragment}"):
        check_weighting(factory)


def test_a_weighting_of_another_level_than_it_registered_fails(isolated_registries):
    isolated_registries.WEIGHTINGS.register("misfiled", level="gradient")(_DropsLast)
    with pytest.raises(AssertionError, match=r"^misfiled: its level is 'loss', not .* declares \('gradient'\)"):
        check_weighting("misfiled")


# -- models --------------------------------------------------------------------------------------------

def _model_tasks(name: str) -> tuple[str, ...]:
    return ("seg",) if MODELS.entry(name).meta.get("single_task") else ("depth", "seg", "edge")


# Built-in models this kit finds breaking a promise: name → (the message's fragment, what is wrong).
FINDINGS = {
    "context": ("parameters no task's loss reaches: backbone.encoder.layer4",
                "the stride-32 stage of the encoder and the 1×1 reductions at strides 4, 8 and 32 are built, "
                "run and optimised, but only the stride-16 maps are used"),
    "cross_stitch": ("parameters no task's loss reaches: branches.seg.reduce.0",
                     "each task's backbone copy reduces all four scales, but seg's decoder reads no skip and "
                     "edge's reads the stride-4 one only: those reductions are dead"),
    "fcn": ("parameters no task's loss reaches: backbone.reduce.0", "the stride-4 reduction is never read"),
}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_keeps_the_contract(name):
    if name.startswith("smp_"):
        pytest.importorskip("segmentation_models_pytorch", reason="smp models need segmentation-models-pytorch")
    tasks = _model_tasks(name)
    try:
        report = check_model(name, tasks, compile_note=False)  # the compile note: test below
    except AssertionError as exc:
        if name in FINDINGS and FINDINGS[name][0] in str(exc):
            pytest.xfail(f"{FINDINGS[name][1]} ({exc})")
        raise
    assert name not in FINDINGS, f"{name} keeps the contract now: drop it from FINDINGS"
    torch.manual_seed(0)
    net = MODELS.build(name, build_tasks(tasks, DatasetInfo(num_classes=5)), build_backbone("test_resnet", width=16))
    has_maps = any(callable(getattr(m, "attention_maps", None)) for m in net.modules())
    assert {"evaluation outputs", "bf16 autocast", "state dict round trip", "deterministic under a seed",
            "shared and task parameters", "training outputs",
            "every parameter is reached; every task's loss reaches its own branch and the shared ones"
            } <= set(report.passed)
    assert ("attention maps" in report.passed) == has_maps


@pytest.mark.slow
def test_a_model_check_reports_whether_torch_compile_traces_it_in_one_graph():
    report = check_model("mtan")
    assert report.notes["torch.compile"] == "one graph"
    assert report.notes["host syncs"] == ("not checked (no GPU)" if not torch.cuda.is_available()
                                          else "none in forward (CUDA)")


class _Plain(MultiTaskModel):
    """A plugin-like model: the four scales summed at stride 4, a 1×1 head per task, upsampled."""

    def __init__(self, tasks, backbone):
        super().__init__(list(tasks))
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: nn.Conv2d(backbone.width, task.out_channels, 1) for t, task in tasks.items()})

    def encode(self, x):
        return self.backbone(x)

    def fused(self, shared):
        return sum(F.interpolate(f, size=shared[0].shape[-2:], mode="bilinear", align_corners=False) for f in shared)

    def decode(self, shared, size):
        fused = self.fused(shared)
        return {t: F.interpolate(head(fused), size=size, mode="bilinear", align_corners=False)
                for t, head in self.heads.items()}


class _WrongSize(_Plain):
    def decode(self, shared, size):
        fused = self.fused(shared)
        return {t: head(fused) for t, head in self.heads.items()}  # left at stride 4


class _SharedInEvaluation(_Plain):
    def forward(self, x):
        out = super().forward(x)
        out[SHARED] = self.encode(x)
        return out


class _AuxAsADict(_Plain):
    def decode(self, shared, size):
        out = super().decode(shared, size)
        if self.training:
            out[AUX] = {t: head(shared[2]) for t, head in self.heads.items()}
        return out


class _DetachedSeg(_Plain):
    def decode(self, shared, size):
        out = super().decode(shared, size)
        out["seg"] = F.interpolate(self.heads["seg"](self.fused(shared).detach()), size=size, mode="bilinear")
        return out


class _HeadsInAList(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        self.heads = nn.ModuleList(self.heads.values())  # task_parameters finds ModuleDicts keyed by task

    def decode(self, shared, size):
        fused = self.fused(shared)
        return {t: F.interpolate(head(fused), size=size, mode="bilinear") for t, head in zip(self.task_names,
                                                                                                 self.heads)}


class _Spare(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        self.spare = nn.Linear(2, 2)


class _StateOutsideTheStateDict(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        self.scale = torch.rand(()) + 0.5  # a plain attribute: neither a parameter nor a buffer

    def decode(self, shared, size):
        return {t: y * self.scale for t, y in super().decode(shared, size).items()}


class _UnseededHeads(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        with torch.no_grad():
            for head in self.heads.values():
                head.weight.copy_(torch.from_numpy(np.random.default_rng().normal(size=head.weight.shape)))


class _SharesNothing(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        self.encoder = self.backbone  # shared_parameters() reads self.backbone unless shared_modules says otherwise
        del self.backbone

    def encode(self, x):
        return self.encoder(x)


class _Similarity(nn.Module):
    def forward(self, x):
        return x

    def attention_maps(self, x):  # B×1×HW×HW similarities, not a softmax over the keys
        q = x.flatten(2).transpose(1, 2)
        return torch.sigmoid(q @ q.transpose(1, 2))[:, None]


class _UnnormalisedAttention(_Plain):
    def __init__(self, tasks, backbone):
        super().__init__(tasks, backbone)
        self.attend = _Similarity()

    def fused(self, shared):
        return self.attend(super().fused(shared))


@pytest.mark.parametrize("factory, fragment", [
    (_WrongSize, r"out\['depth'\] in evaluation is \(2, 1, 16, 16\), not B×C×H×W at the input size \(2, 1, 64, 64\)"),
    (_SharedInEvaluation, r"in evaluation it returns \['depth', 'edge', 'seg', 'shared'\], not the tasks"),
    (_AuxAsADict, r"out\['aux'\] is not a list of \{task: B×C×h×w\}"),
    (_DetachedSeg, "task seg's loss reaches no shared parameter"),
    (_HeadsInAList, "task depth has no parameters of its own"),
    (_SharesNothing, r"shared_parameters\(\) is empty: gradient-level weightings have nothing to combine"),
    (_Spare, "parameters no task's loss reaches: spare.weight, spare.bias"),
    (_StateOutsideTheStateDict, "state dict round trip, depth"),
    (_UnseededHeads, "not deterministic under a seed, depth"),
    (_UnnormalisedAttention, "attention rows of attend do not sum to one"),
])
def test_a_broken_model_fails_naming_the_promise(factory, fragment):
    with pytest.raises(AssertionError, match=rf"^{factory.__name__}: {fragment}"):
        check_model(factory, compile_note=False)


def test_a_plugin_like_model_keeps_the_whole_contract():
    report = check_model(_Plain, tasks=("depth", "seg", "edge", "normals"), compile_note=False)
    assert "every parameter is reached; every task's loss reaches its own branch and the shared ones" in report.passed
    assert report.notes["attention maps"] == "none"


# -- datasets ------------------------------------------------------------------------------------------

DATASET_PROMISES = {"info", "train, val and test arrays, samples and scoring", "splits disjoint",
                    "valid targets", "deterministic"}
FULLRES = SHARED_DATA / "nyuv2_ref" / "samples_fullres"
CROPS = SHARED_DATA / "nyuv2_ref" / "samples_crop468x625"


def _needs_shared(*folders: Path) -> None:
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        pytest.skip(f"NYUv2 reference samples not found at {', '.join(missing)} (only in the project workspace)")


def _png(path: Path) -> np.ndarray:
    from torchvision.io import ImageReadMode, read_image

    x = read_image(str(path), ImageReadMode.UNCHANGED)
    return x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()


@pytest.fixture(scope="module")
def nyud_mt_root(tmp_path_factory) -> Path:
    """An NYUD-MT folder (MTI-Net's layout) of real frames: 433 and 464 (depth, labels) train, and
    834 (a 468×625 crop, put back at its place in the 480×640 frame, no depth) is the test split."""
    _needs_shared(FULLRES, CROPS)
    from torchvision.io import write_png

    root = tmp_path_factory.mktemp("nyud_mt")
    for sub in ("images", "depth", "segmentation", "gt_sets"):
        (root / sub).mkdir()
    frames = {i: (_png(FULLRES / f"{i:06d}.png"), _png(FULLRES / f"depth_gt_{i:06d}.png").astype(np.float32) / 5000,
                  _png(FULLRES / f"segm_gt_{i:06d}.png")) for i in (433, 464)}
    image, seg = np.full((480, 640, 3), 255, np.uint8), np.full((480, 640), 255, np.uint8)
    image[6:474, 7:632] = _png(CROPS / "000834.png")[..., :3]
    seg[6:474, 7:632] = _png(CROPS / "000834_mask.png")
    frames[834] = image, np.zeros((480, 640), np.float32), seg
    for i, (image, depth, seg) in frames.items():
        write_png(torch.from_numpy(image).permute(2, 0, 1).contiguous(), str(root / "images" / f"{i:04d}.png"))
        np.save(root / "depth" / f"{i:04d}.npy", depth)
        labels = np.where(seg == 255, 0, seg.astype(np.int64) + 1).astype(np.uint8)  # the release's: 0 = ignore
        write_png(torch.from_numpy(labels)[None], str(root / "segmentation" / f"{i:04d}.png"))
    (root / "gt_sets" / "train.txt").write_text("0433\n0464\n")
    (root / "gt_sets" / "val.txt").write_text("0834\n")
    return root


@pytest.fixture(scope="module")
def nyuv2_root(tmp_path_factory) -> Path:
    """A prepared NYUv2 cache (size 32) of a ten-frame labeled file whose first two frames are the
    real 433 and 464 (the rest unlabelled and without depth, as unwritten frames read)."""
    _needs_shared(FULLRES)
    import h5py

    from mtlbench.data import nyuv2 as N
    from tests.data.test_nyuv2 import sample, to_894

    mat = tmp_path_factory.mktemp("nyuv2") / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w", userblock_size=512) as f:  # the labeled file's layout: MATLAB axes reversed
        images = f.create_dataset("images", (10, 3, 640, 480), np.uint8, chunks=(1, 3, 640, 480))
        depths = f.create_dataset("depths", (10, 640, 480), np.float32, chunks=(1, 640, 480))
        raw = f.create_dataset("rawDepths", (10, 640, 480), np.float32, chunks=(1, 640, 480))
        labels = f.create_dataset("labels", (10, 640, 480), np.uint16, chunks=(1, 640, 480))
        for k, i in enumerate((433, 464)):
            s = sample(i)
            images[k] = s["image"].transpose(2, 1, 0)
            depths[k] = raw[k] = s["raw_depth"].T
            labels[k] = to_894(s["seg40"]).T
    with open(mat, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    out = mat.parent / "cache"
    N.prepare_nyuv2(mat, out, size=32, classes=40)
    return out


# how each built-in dataset is built here; plugins are tried with their defaults
DATASET_ARGS = {"synthrooms": {"frames": 20}, "nyud_mt": {"val_frames": 1}, "nyuv2": {}}
DATASET_ROOTS = {"nyud_mt": "nyud_mt_root", "nyuv2": "nyuv2_root"}


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_registered_dataset_keeps_the_contract(name, request):
    root = str(request.getfixturevalue(DATASET_ROOTS[name])) if name in DATASET_ROOTS else ""
    try:
        report = check_dataset(name, root=root, size=32, **DATASET_ARGS.get(name, {}))
    except MtlbenchError as exc:
        if name in DATASET_ARGS:
            raise
        pytest.skip(f"plugin dataset {name} does not build with its defaults and no root: {exc}")
    assert set(report.passed) == DATASET_PROMISES


def test_the_shared_nyud_mt_frames_split_as_listed(nyud_mt_root):
    report = check_dataset("nyud_mt", root=str(nyud_mt_root), size=32, val_frames=1)
    assert report.notes["frames"] == "train 1, val 1, test 1"


def _tiny(root, size, progress=None, *, broken=""):
    """Ten random frames split 6/2/2 (depth, labels and normals), or as broken as asked."""
    g = torch.Generator().manual_seed(0)
    n, side = 10, size + (broken == "size")
    image = torch.randint(0, 256, (n, side, side, 3), generator=g, dtype=torch.uint8)
    if broken == "unseeded":
        image = torch.from_numpy(np.random.default_rng().integers(0, 256, (n, side, side, 3), dtype=np.uint8))
    max_depth = 10.0
    depth = torch.rand(n, side, side, generator=g) * max_depth * (broken != "no depth")
    seg = torch.randint(0, 3, (n, side, side), generator=g, dtype=torch.uint8)
    seg[0, 0, 0] = 7 if broken == "labels" else seg[0, 0, 0]
    normals = F.normalize(torch.randn(n, side, side, 3, generator=g), dim=-1)
    info = DatasetInfo(num_classes=3, max_depth=float("inf") if broken == "max depth" else max_depth,
                       class_names=("wall", "floor", "box"), ignore_index=2 if broken == "ignore" else 255,
                       targets={**RGBD_TARGETS, "normals": NORMALS_TARGET})
    parts = [list(range(6)), [] if broken == "empty val" else [6, 7], [5, 9] if broken == "shared frame" else [8, 9]]
    targets = {"depth": depth.double() if broken == "depth64" else depth, "seg": seg, "normals": normals}
    arrays = Arrays(image, torch.arange(1, n + 1), targets)
    train, val, test = (DenseDataset(arrays.take(p), info) for p in parts)
    if broken == "normals":  # DenseDataset refuses frames without a declared target: dropped after it
        del train.arrays.targets["normals"]
    return DatasetSplits(train, val, test, info=info, source="tiny")


def test_a_well_formed_dataset_passes():
    assert set(check_dataset(_tiny).passed) == DATASET_PROMISES


@pytest.mark.parametrize("broken, fragment", [
    ("labels", r"the train split: seg labels \[7\] are neither classes 0..2 nor the ignore label 255"),
    ("depth64", r"the train split: depth is torch.float64 \(6, 32, 32\), not torch.float32 or torch.float16 or "
                r"torch.uint8 \(6, 32, 32\)"),
    ("size", r"the train split: image is torch.uint8 \(6, 33, 33, 3\), not torch.uint8 \(6, 32, 32, 3\)"),
    ("empty val", "the val split is empty"),
    ("shared frame", r"frames \[6\] are in both the train and the test split"),
    ("unseeded", "not deterministic: a second build has another train image"),
    ("max depth", r"info.max_depth is inf, not a depth range in metres \(finite, positive\)"),
    ("ignore", "the ignore label 2 is one of the 3 classes"),
    ("normals", "the train split: the frames carry no normals, which info.targets lists"),
    ("no depth", r"no pixel has valid depth \(0 < depth ≤ 10.0\)"),
])
def test_a_broken_dataset_fails_naming_the_promise(broken, fragment):
    with pytest.raises(AssertionError, match=rf"^_tiny: {fragment}"):
        check_dataset(_tiny, broken=broken)


# -- tasks -----------------------------------------------------------------------------------------

class _MAE(Metric):
    """Mean absolute error of a depth-normalised prediction, pooled (summed state)."""

    task = "broken"
    names = ("mae",)
    summed = ("error", "count")
    higher_is_better = frozenset()

    def __init__(self):
        self.reset()

    def reset(self):
        self.error, self.count = torch.zeros(()), torch.zeros(())

    def update(self, pred, batch):
        self.error = self.error + (pred.float() - batch["depth"] / 10.0).abs().sum()
        self.count = self.count + pred.numel()

    def compute(self):
        return {"mae": float(self.error / self.count)}


class _LastBatchOnly(_MAE):
    def update(self, pred, batch):
        self.reset()  # forgets the batches before
        super().update(pred, batch)


@dataclasses.dataclass(frozen=True)
class SaliencyLike(Task):
    def predict(self, output):
        return output.float().sigmoid()

    def metrics(self, options=None):
        return _MAE()

    def colorize(self, prediction):
        return (prediction.float().clamp(0, 1) * 255).to(torch.uint8)[..., None].expand(*prediction.shape, 3)


@pytest.mark.parametrize("name", TASKS.names())
def test_every_registered_task_keeps_the_contract(name):
    # built-ins and the plugins installed here (CI installs those in plugins/)
    report = check_task(name)
    assert report.passed == ["definition", "missing", "derive", "predict", "metrics", "colorize and save"]


@dataclasses.dataclass(frozen=True)
class _InPlaceSigmoid(SaliencyLike):
    def predict(self, output):
        return output.sigmoid_()


@dataclasses.dataclass(frozen=True)
class _WrongKey(SaliencyLike):
    pass


@dataclasses.dataclass(frozen=True)
class _Unstreamed(SaliencyLike):
    def metrics(self, options=None):
        return _LastBatchOnly()


@pytest.mark.parametrize("cls, key, fragment", [
    (_InPlaceSigmoid, "mae", "predict\\(\\) edited the raw head output in place"),
    (_WrongKey, "maxf", "key metric 'maxf' is not among its metrics' keys \\(mae\\)"),
    (_Unstreamed, "mae", "metrics \\['mae'\\] differ when the batch comes in two halves"),
])
def test_a_broken_task_fails_naming_the_promise(cls, key, fragment):
    def factory(info):
        return cls("depth", 1, "depth", "l1_depth", key_metric=key)  # a depth task done wrong
    with pytest.raises(AssertionError, match=f"^factory: {fragment}"):
        check_task(factory)
