"""check_model: the model contract."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.models.backbones import build_backbone
from mtlbench.models.base import AUX, SHARED, MultiTaskModel, capture_attention
from mtlbench.registry import MODELS
from mtlbench.tasks import DatasetInfo, build_tasks
from mtlbench.testing.common import (
    Report,
    _compile_note,
    _default_info,
    _host_sync_note,
    _named,
    _nonzero,
    _saved,
    _says,
)

# -- models ------------------------------------------------------------------------------------------

def _param_names(model: nn.Module, params: Sequence[nn.Parameter], limit: int = 4) -> str:
    names = {id(p): n for n, p in model.named_parameters()}
    listed = [names.get(id(p), "?") for p in params]
    return ", ".join(listed[:limit]) + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def check_model(model: str | Callable[..., nn.Module], tasks: Sequence[str] = ("depth", "seg", "edge"),
                backbone: str = "test_resnet", width: int = 16, size: tuple[int, int] = (64, 64),
                info: DatasetInfo | None = None, compile_note: bool = True, **options: Any) -> Report:
    """Check a model (a registered name or its factory, ``factory(tasks, backbone, **options)``)
    against the contract of :mod:`mtlbench.models.base`, built on ``backbone`` (``width`` channels;
    default timm's tiny test ResNet) for ``tasks`` (``info`` default: 5 classes, normals):

    - the factory gives a :class:`~mtlbench.models.base.MultiTaskModel` of the tasks asked for;
    - in evaluation, the outputs are the tasks' alone, ``out[task]`` B×C×H×W at the input size (C
      the task's channels), finite float32; finite under bf16 autocast;
    - a state dict round trip into a model built from another seed gives the same outputs, and
      two models built from one seed agree;
    - every task has parameters of its own (``task_parameters``), none of them shared
      (``shared_parameters``, not empty);
    - in training, the same task outputs, and beside them only ``AUX`` (a list of
      ``{task: B×C×h×w}``) and ``SHARED`` (a list of tensors);
    - the maps :func:`~mtlbench.models.base.capture_attention` records are finite and
      non-negative, batch first; B×heads×queries×keys maps have rows summing to one;
    - every trainable parameter is reached by some task's loss, and every task's loss (its ``AUX``
      outputs included, as the trainer adds them) reaches every parameter of its own branch and
      some shared parameter (the parameters perturbed first, so that a zero-initialised gate does
      not hide a broken path); a part of the shared encoder a task's decoder does not read (a skip
      only depth uses) has a zero gradient from that task, as ``shared_parameters`` documents;
    - reported, not required: host syncs in ``forward`` (checked on a GPU only) and, unless
      ``compile_note=False`` (seconds on a CPU), whether ``torch.compile`` traces it in one graph.
    """

    name, factory = _named(MODELS, model, "model")
    info = info or _default_info()
    specs = build_tasks(tuple(tasks), info)
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, h, w, generator=gen)

    def build(seed: int) -> MultiTaskModel:
        torch.manual_seed(seed)
        return factory(specs, build_backbone(backbone, width=width), **options)

    def shapes(out: Mapping[str, Any], mode: str) -> None:
        for t, spec in specs.items():
            y = out.get(t)
            want = (b, spec.out_channels, h, w)
            got = tuple(y.shape) if isinstance(y, Tensor) else y
            assert isinstance(y, Tensor) and tuple(y.shape) == want, \
                f"{name}: out[{t!r}] in {mode} is {got!r}, not B×C×H×W at the input size {want}"
            assert y.dtype == torch.float32 and torch.isfinite(y).all(), \
                f"{name}: out[{t!r}] in {mode} is not finite float32 ({y.dtype})"

    net = build(0).eval()
    assert isinstance(net, MultiTaskModel), f"{name}: the factory returned {type(net).__name__}, not a MultiTaskModel"
    assert list(net.task_names) == list(tasks), \
        f"{name}: task_names {net.task_names}, not the tasks asked for {list(tasks)}"
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, dict) and set(out) == set(tasks), \
        f"{name}: in evaluation it returns {sorted(out) if isinstance(out, dict) else type(out)}, not the tasks " \
        f"{sorted(tasks)} alone (AUX and SHARED only in training)"
    shapes(out, "evaluation")
    report.ok("evaluation outputs")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    for t in tasks:
        assert low[t].shape == out[t].shape and torch.isfinite(low[t].float()).all(), \
            f"{name}: out[{t!r}] not finite under bf16 autocast"
    report.ok("bf16 autocast")

    other = build(1).eval()
    other.load_state_dict(_saved(net))
    with torch.no_grad():
        again, twin = other(x), build(0).eval()(x)
    for t in tasks:
        torch.testing.assert_close(again[t], out[t], msg=_says(f"{name}: state dict round trip, {t}"))
        torch.testing.assert_close(twin[t], out[t],
                                   msg=_says(f"{name}: not deterministic under a seed, {t}"))
    report.ok("state dict round trip")
    report.ok("deterministic under a seed")

    shared = [p for p in net.shared_parameters() if p.requires_grad]
    assert shared, f"{name}: shared_parameters() is empty: gradient-level weightings have nothing to combine"
    ids = {id(p) for p in shared}
    for t in tasks:
        own = [p for p in net.task_parameters(t) if p.requires_grad]
        assert own, f"{name}: task {t} has no parameters of its own (task_parameters: a ModuleDict keyed by task)"
        both = [p for p in own if id(p) in ids]
        assert not both, f"{name}: task {t}'s parameters are also shared: {_param_names(net, both)}"
    report.ok("shared and task parameters")

    trained = copy.deepcopy(net).train()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    out = trained(x)
    extra = set(out) - set(tasks) - {AUX, SHARED}
    assert set(tasks) <= set(out) and not extra, \
        f"{name}: in training it returns {sorted(out)}: the tasks {sorted(tasks)}, and beside them only " \
        f"{AUX!r} and {SHARED!r}"
    shapes(out, "training")
    assert isinstance(out.get(AUX, []), (list, tuple)) and all(
        isinstance(e, dict) and set(e) <= set(tasks) and all(
            isinstance(y, Tensor) and y.dim() == 4 and y.shape[:2] == out[t].shape[:2] for t, y in e.items())
        for e in out.get(AUX, [])), f"{name}: out[{AUX!r}] is not a list of {{task: B×C×h×w}}"
    assert isinstance(out.get(SHARED, []), (list, tuple)) and all(isinstance(s, Tensor) for s in out.get(SHARED, [])), \
        f"{name}: out[{SHARED!r}] is not a list of tensors"
    report.ok("training outputs")

    with torch.no_grad(), capture_attention(net) as maps:
        net(x)
    for key, att in maps.items():
        assert att.shape[0] == b and torch.isfinite(att).all() and (att >= 0).all(), \
            f"{name}: attention maps of {key} ({tuple(att.shape)}) not finite, non-negative and batch first"
        if att.dim() == 4:
            torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)),
                                       msg=_says(f"{name}: attention rows of {key} do not sum to one"))
    if maps:
        report.ok("attention maps")
    report.notes["attention maps"] = ", ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items()) or "none"

    # a fixed random projection of each output: every path to it carries gradient
    weights = {t: torch.randn(out[t].shape, generator=gen) for t in tasks}
    losses = {t: (out[t] * weights[t]).mean() for t in tasks}
    for extra_out in out.get(AUX, []):
        for t, y in extra_out.items():
            y = y if y.shape[-2:] == (h, w) else F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            losses[t] = losses[t] + (y * weights[t]).mean()
    params = [p for p in trained.parameters() if p.requires_grad]
    shared = [p for p in trained.shared_parameters() if p.requires_grad]
    reach = {t: {id(p) for p, g in zip(params, torch.autograd.grad(losses[t], params, retain_graph=True,
                                                                    allow_unused=True)) if _nonzero(g)}
             for t in tasks}
    dead = [p for p in params if not any(id(p) in got for got in reach.values())]
    assert not dead, f"{name}: parameters no task's loss reaches: {_param_names(trained, dead)}"
    for t, got in reach.items():
        own = [p for p in trained.task_parameters(t) if p.requires_grad]
        missing = [p for p in own if id(p) not in got]
        assert not missing, \
            f"{name}: task {t}'s loss does not reach its own parameters {_param_names(trained, missing)}"
        assert any(id(p) in got for p in shared), f"{name}: task {t}'s loss reaches no shared parameter"
    report.ok("every parameter is reached; every task's loss reaches its own branch and the shared ones")

    report.notes["host syncs"] = _host_sync_note(net, x)
    report.notes["torch.compile"] = _compile_note(net, x) if compile_note else "not checked (compile_note=False)"
    return report
