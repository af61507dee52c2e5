"""The weighting interface: loss-level and gradient-level methods own the step's backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mtlbench.config import RunConfig, from_dict
from mtlbench.engine.build import resolve
from mtlbench.errors import MtlbenchError
from mtlbench.models.base import MultiTaskModel
from mtlbench.weighting import FixedWeighting, GradientWeighting, UncertaintyWeighting
from mtlbench.weighting.gradient import pcgrad
from mtlbench.weighting.methods import fixed


def PCGrad(tasks):
    return pcgrad(tasks, "parameters")


def test_fixed_weighting_weighted_sum_and_default_one():
    w = FixedWeighting(["depth", "seg", "edge"], {"depth": 2.0, "edge": 0.5})
    losses = {"depth": torch.tensor(1.5, requires_grad=True), "seg": torch.tensor(0.7, requires_grad=True),
              "edge": torch.tensor(4.0, requires_grad=True)}
    total = w.backward(losses, None)
    # 2·1.5 + 1·0.7 (seg not named → 1) + 0.5·4 = 5.7
    assert total.item() == pytest.approx(5.7, rel=1e-6)
    assert not total.requires_grad  # the logged total is detached
    assert losses["depth"].grad.item() == pytest.approx(2.0)
    assert losses["seg"].grad.item() == pytest.approx(1.0)
    assert losses["edge"].grad.item() == pytest.approx(0.5)
    # no weights: equal weighting, plain sum 1.5 + 0.7 + 4 = 6.2
    assert fixed(["depth", "seg", "edge"], {})({k: v.detach() for k, v in losses.items()}).item() == \
        pytest.approx(6.2, rel=1e-6)


def test_fixed_weighting_rejects_weights_for_untrained_tasks():
    with pytest.raises(ValueError, match="normals"):
        FixedWeighting(["depth", "seg"], {"depth": 1.0, "normals": 2.0})


def test_uncertainty_weighting_at_init_is_plain_sum():
    w = UncertaintyWeighting(["depth", "seg"])
    assert list(w.parameters())[0] is w.log_vars
    assert torch.equal(w.log_vars.detach(), torch.zeros(2))
    # exp(0)·L + 0 for each task: 1.5 + 0.25
    total = w({"depth": torch.tensor(1.5), "seg": torch.tensor(0.25)})
    assert total.item() == pytest.approx(1.75, rel=1e-6)


def test_uncertainty_weighting_with_known_log_vars_and_its_gradient():
    w = UncertaintyWeighting(["depth", "seg"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total = w.backward({"depth": torch.tensor(2.0), "seg": torch.tensor(0.3)}, None)
    # exp(-0.5)·2 + 0.5 + exp(1)·0.3 - 1
    expected = math.exp(-0.5) * 2.0 + 0.5 + math.exp(1.0) * 0.3 - 1.0
    assert total.item() == pytest.approx(expected, rel=1e-6)
    # d/ds (exp(-s)·L + s) = 1 - exp(-s)·L
    assert_close(w.log_vars.grad, torch.tensor([1 - math.exp(-0.5) * 2.0, 1 - math.exp(1.0) * 0.3]))


def _resolved(**sections):
    cfg = from_dict({"data": {"options": {"frames": 40}}, **sections}, RunConfig())
    resolve(cfg)
    return cfg


def test_weighting_options_are_checked_against_what_the_method_declares():
    assert _resolved(weighting={"name": "fixed", "options": {"weights": {"depth": 2.0}}}).weighting.options == \
        {"weights": {"depth": 2.0}}
    with pytest.raises(MtlbenchError, match=r"weighting uncertainty takes no option 'weights' .*takes no options"):
        _resolved(weighting={"name": "uncertainty", "options": {"weights": {"depth": 2.0}}})
    with pytest.raises(MtlbenchError, match=r"takes no option 'weight'; did you mean 'weights'\?"):
        _resolved(weighting={"name": "fixed", "options": {"weight": {"depth": 2.0}}})
    with pytest.raises(MtlbenchError, match="non-negative"):
        _resolved(weighting={"name": "fixed", "options": {"weights": {"depth": -1.0}}})
    with pytest.raises(MtlbenchError, match="unknown weighting 'pcgard': did you mean 'pcgrad'"):
        _resolved(weighting={"name": "pcgard"})


class TwoTasks(MultiTaskModel):
    """A shared 2-vector θ and one head weight per task: L_t = a_t·θ + head_t, so that each task's
    gradient of θ is exactly a_t, set by the test."""

    def __init__(self) -> None:
        super().__init__(["a", "b"])
        self.backbone = nn.Linear(2, 1, bias=False)  # θ = backbone.weight (1×2)
        self.heads = nn.ModuleDict({t: nn.Linear(1, 1, bias=False) for t in self.task_names})

    def losses(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        theta = self.backbone.weight[0]
        return {"a": a @ theta + self.heads["a"].weight.sum() * 3.0,
                "b": b @ theta + self.heads["b"].weight.sum() * 5.0}


def test_pcgrad_projects_conflicting_gradients_by_hand():
    model = TwoTasks()
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1·g2 = −1 < 0: they conflict
    total = PCGrad(["a", "b"]).backward(model.losses(g1, g2), model)
    # g1' = g1 − (g1·g2/|g2|²) g2 = (1, 0) + ½(−1, 1) = (0.5, 0.5)
    # g2' = g2 − (g2·g1/|g1|²) g1 = (−1, 1) + (1, 0) = (0, 1)
    assert_close(model.backbone.weight.grad, torch.tensor([[0.5, 1.5]]))
    # task parameters get their own loss's gradient, untouched
    assert_close(model.heads["a"].weight.grad, torch.tensor([[3.0]]))
    assert_close(model.heads["b"].weight.grad, torch.tensor([[5.0]]))
    assert total.item() == pytest.approx(sum(v.item() for v in model.losses(g1, g2).values()))


def test_pcgrad_leaves_agreeing_gradients_as_their_sum():
    model = TwoTasks()
    PCGrad(["a", "b"]).backward(model.losses(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.5])), model)
    assert_close(model.backbone.weight.grad, torch.tensor([[4.0, 2.5]]))


def test_a_gradient_level_method_is_one_class_and_one_registration(isolated_registries):
    """Adding a method: subclass GradientWeighting, register a factory; it trains through `run`."""

    class FirstTaskOnly(GradientWeighting):
        def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
            return jacobian[0]

    isolated_registries.WEIGHTINGS.register("first_only", level="gradient")(
        lambda tasks: FirstTaskOnly(tasks))
    model = TwoTasks()
    from mtlbench.registry import WEIGHTINGS

    WEIGHTINGS.build("first_only", ["a", "b"]).backward(
        model.losses(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.5])), model)
    assert_close(model.backbone.weight.grad, torch.tensor([[1.0, 2.0]]))
    cfg = _resolved(weighting={"name": "first_only"})
    assert cfg.weighting.options == {}


def test_gradient_weighting_writes_gradients_in_the_layout_of_channels_last_parameters() -> None:
    # fused Adam pairs gradient and parameter by raw memory: a contiguous gradient of a
    # channels_last weight would update the wrong elements
    from mtlbench.engine.build import build_run
    from mtlbench.engine.feeding import batches
    from mtlbench.engine.trainer import task_losses
    from mtlbench.models.base import SHARED
    from tests.conftest import tiny_config

    parts = build_run(tiny_config(weighting={"name": "pcgrad"}, train={"channels_last": True}))
    raw = next(batches(parts.dataset_splits().train, 8, True, 0, True))
    batch = parts.pipeline(raw, train=True)
    out = parts.model(batch["image"])
    parts.weighting.backward(task_losses(parts.losses, out, batch), parts.model, out.get(SHARED))
    convs = [p for p in parts.model.shared_parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for p in parts.model.shared_parameters():
        assert p.grad is not None and p.grad.stride() == p.stride()


def test_a_missing_solver_is_one_line_naming_the_pip_install(monkeypatch, tmp_path):
    import importlib.util

    from tests.conftest import TINY_ARGS, assert_bad_input, invoke

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "quadprog" else real(name, *a))
    result = invoke("run", *TINY_ARGS, "--weighting", "upgrad", "--run-dir", tmp_path / "r")
    assert_bad_input(result, "weighting upgrad: upgrad needs the quadprog solver (quadprog",
                     "missing): pip install 'mtlbench[solvers]'")
    assert not (tmp_path / "r").exists()


def test_list_weightings_shows_every_method_with_its_level_paper_and_extra():
    from mtlbench.registry import WEIGHTINGS
    from tests.conftest import invoke

    result = invoke("list", "weightings")
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # cells wrap over table rows
    names = WEIGHTINGS.names()
    assert len(names) >= 25
    for name in names:
        assert f" {name} " in text, name
    for fragment in ("Kendall, Gal, Cipolla, CVPR 2018", "Navon et al., ICML 2022", "(gradient level)",
                     "(loss level)", "needs pip install 'mtlbench[solvers]'", "implementation: torchjd"):
        assert fragment in text, fragment


def test_method_options_reach_the_method_and_bad_values_are_named():
    from mtlbench.engine.build import build_weighting

    cfg = _resolved(weighting={"name": "dwa", "options": {"temperature": 0.5}})
    assert build_weighting(cfg, ["depth", "seg", "edge"]).temperature == 0.5
    cfg = _resolved(weighting={"name": "mgda", "options": {"through": "representation"}})
    assert build_weighting(cfg, ["depth", "seg", "edge"]).through == "representation"
    with pytest.raises(MtlbenchError, match=r"temperature.*must be a number > 0, got -1"):
        _resolved(weighting={"name": "dwa", "options": {"temperature": -1}})
    with pytest.raises(MtlbenchError, match=r"through.*must be 'parameters' or 'representation', got 'encoder'"):
        _resolved(weighting={"name": "pcgrad", "options": {"through": "encoder"}})
    with pytest.raises(MtlbenchError, match=r"weighting moco takes no option 'through'"):
        _resolved(weighting={"name": "moco", "options": {"through": "representation"}})
    with pytest.raises(MtlbenchError, match=r"did you mean 'temperature'"):
        _resolved(weighting={"name": "dwa", "options": {"temprature": 2.0}})
