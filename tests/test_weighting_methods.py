"""Every registered weighting: closed forms on hand-made gradients, the Jacobian the torchjd
wrappers pass, training on a tiny problem, checkpointed state, bf16, and two processes against
one on the same global batch."""

from __future__ import annotations

import io
import math
import os
import re
import socket
from collections.abc import Callable, Mapping

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.testing import assert_close

from mtlbench.models.base import MultiTaskModel
from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting import GradientWeighting, Weighting
from mtlbench.weighting.gradient import EXTRAS, project_simplex

TASKS = ["a", "b", "c"]
ALL = WEIGHTINGS.names()


class Tiny(MultiTaskModel):
    """x (B×4) → a shared Linear+tanh (the backbone) → one linear head per task."""

    def __init__(self, tasks: list[str] = TASKS, seed: int = 0) -> None:
        super().__init__(list(tasks))
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(16, 1) for t in tasks})

    def losses(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
        z = self.backbone(x)
        return ({t: ((self.heads[t](z).squeeze(1) - y[:, i]) ** 2).mean() for i, t in enumerate(self.task_names)},
                [z])


def problem(n: int = 64, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Three regression targets of different scales that pull the shared layer apart."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.randn(4, 3, generator=g)
    y = torch.stack([x @ w[:, 0], 5.0 * torch.tanh(x @ w[:, 1]), torch.sin(2 * x @ w[:, 2])], dim=1)
    return x, y


def build(name: str, tasks: list[str] = TASKS, **options: object) -> Weighting:
    return WEIGHTINGS.build(name, list(tasks), **options)  # type: ignore[no-any-return]


def step(w: Weighting, model: Tiny, opt: torch.optim.Optimizer, x: Tensor, y: Tensor,
         average: Callable[[], None] | None = None) -> dict[str, Tensor]:
    """One training step as the trainer takes it (``average``: the processes' gradients)."""
    opt.zero_grad(set_to_none=True)
    losses, shared = model.losses(x, y)
    w.backward(losses, model, shared)
    if average is not None:
        average()
    opt.step()
    if w.updates_after_step:
        def recompute() -> dict[str, Tensor]:
            with torch.no_grad():
                return model.losses(x, y)[0]
        w.after_step(recompute)
    return {k: v.detach() for k, v in losses.items()}


def train(w: Weighting, model: Tiny, x: Tensor, y: Tensor, steps: int, epoch: int = 10,
          lr: float = 1e-2) -> list[dict[str, Tensor]]:
    opt = torch.optim.Adam([*model.parameters(), *w.parameters()], lr=lr)
    history, sums = [], torch.zeros(len(model.task_names))
    for i in range(1, steps + 1):
        history.append(step(w, model, opt, x, y))
        sums += torch.stack(list(history[-1].values()))
        if i % epoch == 0:
            w.end_epoch(sums / epoch)
            sums.zero_()
    return history


def two_task(a: Tensor, b: Tensor) -> tuple[dict[str, Tensor], nn.Module]:
    """Losses a·θ + 3h_a and b·θ + 5h_b: each task's gradient of the shared θ is exactly a or b."""

    class M(MultiTaskModel):
        def __init__(self) -> None:
            super().__init__(["a", "b"])
            self.backbone = nn.Linear(len(a), 1, bias=False)
            self.heads = nn.ModuleDict({t: nn.Linear(1, 1, bias=False) for t in self.task_names})

    m = M()
    with torch.no_grad():  # θ = 1, heads 1: losses Σa + 3 and Σb + 5, positive in the tests
        for p in m.parameters():
            p.fill_(1.0)
    theta = m.backbone.weight[0]
    return {"a": a @ theta + 3.0 * m.heads["a"].weight.sum(), "b": b @ theta + 5.0 * m.heads["b"].weight.sum()}, m


def gradient_of(name: str, rows: Tensor, seed: int | None = None, **options: object) -> tuple[Tensor, Weighting]:
    """The shared gradient ``name`` writes for per-task gradients ``rows`` (T×P)."""
    tasks = [f"t{i}" for i in range(len(rows))]

    class M(MultiTaskModel):
        def __init__(self) -> None:
            super().__init__(tasks)
            self.backbone = nn.Linear(rows.shape[1], 1, bias=False)

    m = M()
    theta = m.backbone.weight[0]
    w = build(name, tasks, **options)
    if seed is not None:
        torch.manual_seed(seed)
    w.backward({t: r @ theta for t, r in zip(tasks, rows)}, m)
    return m.backbone.weight.grad[0], w


# -- the catalogue ---------------------------------------------------------------------------------

def test_the_catalogue_has_every_libmtl_method_with_its_paper():
    libmtl = {"fixed", "gradnorm", "mgda", "uncertainty", "dwa", "gls", "graddrop", "pcgrad", "gradvac", "imtl_l",
              "imtl_g", "cagrad", "nash_mtl", "rlw", "moco", "aligned_mtl", "db_mtl", "stch", "excess_mtl",
              "fairgrad", "famo", "modo", "sdmgrad", "upgrad"}
    assert libmtl <= set(ALL)
    assert len(ALL) >= 25
    for name in ALL:
        e = WEIGHTINGS.entry(name)
        assert e.meta["level"] in ("loss", "gradient")
        assert name == "fixed" or re.search(r"(19|20)\d\d", e.meta["paper"]), name


# -- closed forms ----------------------------------------------------------------------------------

def test_pcgrad_projects_conflicting_gradients():
    g, w = gradient_of("pcgrad", torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    # g1' = g1 − (g1·g2/|g2|²) g2 = (0.5, 0.5); g2' = g2 − (g2·g1/|g1|²) g1 = (0, 1)
    assert_close(g, torch.tensor([0.5, 1.5]))


def test_mgda_is_the_min_norm_point_of_two_gradients():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.2, 1.0])
    g, w = gradient_of("mgda", torch.stack([g1, g2]))
    # min over α of |α g1 + (1−α) g2|²: α = (g2 − g1)·g2 / |g1 − g2|²
    alpha = float((g2 - g1) @ g2 / (g1 - g2).square().sum())
    assert_close(g, alpha * g1 + (1 - alpha) * g2, atol=2e-3, rtol=0)
    assert_close(w.applied.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_imtl_g_projects_equally_on_every_unit_gradient():
    rows = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 3.0, 0.0, 1.0], [-1.0, 1.0, 2.0, 0.0]])
    g, _ = gradient_of("imtl_g", rows)
    proj = (rows / rows.norm(dim=1, keepdim=True)) @ g
    assert_close(proj, proj[0].expand(3), rtol=1e-4, atol=1e-5)
    assert float(proj[0]) > 0


def test_cagrad_at_c_zero_is_the_mean_gradient():
    _available("cagrad")
    rows = torch.tensor([[1.0, 0.0, 2.0], [-0.5, 1.0, 0.0], [0.0, 0.3, -1.0]])
    g, _ = gradient_of("cagrad", rows, c=0.0)
    assert_close(g, rows.mean(0), rtol=1e-4, atol=1e-4)


def test_nash_mtl_weights_solve_the_bargaining_condition():
    _available("nash_mtl")
    rows = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, 0.3, 0.5]])
    _, w = gradient_of("nash_mtl", rows, max_norm=0.0)
    alpha = w.applied.double()
    # Navon et al.: Gᵀ G α = 1/α, i.e. α_t · (g_t · d) = 1 for d = Σ α g
    gram = (rows @ rows.t()).double()
    assert_close(alpha * (gram @ alpha), torch.ones(3, dtype=torch.float64), rtol=2e-2, atol=0)


def test_fairgrad_at_alpha_one_meets_the_proportional_fairness_condition():
    rows = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, 0.3, 0.5]])
    _, w = gradient_of("fairgrad", rows, alpha=1.0)
    alpha = w.applied.double()
    gram = (rows @ rows.t()).double()
    assert_close(alpha * (gram @ alpha), torch.ones(3, dtype=torch.float64), rtol=2e-2, atol=0)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_never_conflict_with_a_task(name):
    _available(name)
    rows = torch.tensor([[1.0, 0.0, 0.0], [-2.0, 0.5, 0.0], [0.0, -1.0, 0.1]])
    assert (rows @ rows.mean(0) < 0).any()  # the mean conflicts with some task
    g, w = gradient_of(name, rows)
    # torchjd solves on G/tr(G) + 1e-4·I (so that the QP is definite): the KKT conditions then give
    # g_t·d ≥ −1e-4·tr(G)·w_t instead of ≥ 0
    slack = 1e-4 * float(torch.trace(rows @ rows.t())) * w.applied
    assert (rows @ g >= -slack - 1e-6).all()
    assert g.norm() > 0


def test_upgrad_leaves_non_conflicting_gradients_as_their_mean():
    _available("upgrad")
    rows = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.0]])
    g, _ = gradient_of("upgrad", rows)
    assert_close(g, rows.mean(0), rtol=1e-4, atol=1e-5)


def test_config_has_equal_cosine_to_every_gradient():
    rows = torch.tensor([[1.0, 0.0, 0.0], [-0.5, 1.0, 0.0], [0.2, 0.1, 1.0]])
    g, w = gradient_of("config", rows)
    cos = (rows / rows.norm(dim=1, keepdim=True)) @ (g / g.norm())
    assert_close(cos, cos[0].expand(3), rtol=1e-4, atol=1e-5)
    assert_close(w.applied @ rows, g)  # a weighted sum of the gradients, logged


@pytest.mark.parametrize("case", ["random", "more tasks than dimensions", "a zero gradient", "parallel"])
def test_config_from_the_gramian_is_torchjds_config(case):
    import torchjd.aggregation as jd

    torch.manual_seed(0)
    rows = {"random": torch.randn(3, 50), "more tasks than dimensions": torch.randn(4, 2),
            "a zero gradient": torch.cat([torch.randn(2, 6), torch.zeros(1, 6)]),
            "parallel": torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 1.0, 1.0]])}[case].double()
    w = WEIGHTINGS.build("config", ["depth", "seg", "edge", "normals"][:len(rows)])
    assert_close(w.aggregate(rows), jd.ConFIG()(rows), rtol=1e-9, atol=1e-9)


def test_config_of_near_parallel_float32_gradients_is_as_close_as_torchjds():
    # float32 rounding makes the Gramian of two near-parallel gradients singular in float64
    # terms: inverting that noise gave weights of ±1e5 before the cut at float32's precision
    import torchjd.aggregation as jd

    torch.manual_seed(0)
    base = torch.randn(2000)
    rows = torch.stack([base, base + 1e-4 * torch.randn(2000), torch.randn(2000)])
    w = WEIGHTINGS.build("config", ["depth", "seg", "edge"])
    exact = jd.ConFIG()(rows.double())
    error = (w.aggregate(rows).double() - exact).norm() / exact.norm()
    torchjd_error = (jd.ConFIG()(rows).double() - exact).norm() / exact.norm()
    assert error < 1.1 * torchjd_error + 1e-6 and w.applied.abs().max() < 10


def test_graddrop_keeps_the_sum_where_every_sign_agrees():
    rows = torch.tensor([[1.0, -2.0, 0.5], [0.3, -0.1, 2.0]])
    g, _ = gradient_of("graddrop", rows)
    assert_close(g, rows.sum(0))


def test_aligned_mtl_of_orthogonal_gradients_scales_each_to_the_smallest():
    # G = diag(σ²): aligning makes the condition number one at the smallest singular value σ_min,
    # so each task's gradient enters with weight σ_min/σ_t (the mean of the aligned rows)
    rows = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    g, _ = gradient_of("aligned_mtl", rows)
    sigma_min = 0.5
    expected = (rows / rows.norm(dim=1, keepdim=True) * sigma_min).sum(0)
    assert_close(g / g.norm(), expected / expected.norm(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["rgw", "rlw"])
def test_random_weights_are_a_softmax_of_a_normal_draw(name):
    torch.manual_seed(7)
    draw = torch.softmax(torch.randn(3), dim=0)
    if name == "rgw":
        g, w = gradient_of(name, torch.eye(3), seed=7)
        assert_close(g, draw)
    else:
        w = build(name)
        torch.manual_seed(7)
        w.backward({t: torch.tensor(float(i + 1), requires_grad=True) for i, t in enumerate(TASKS)}, None)
    assert_close(w.applied, draw)


def test_moco_first_step_by_hand():
    rows = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    g, w = gradient_of("moco", rows, beta=0.5, gamma=0.1, rho=0.0)
    y = 0.5 * rows  # y ← 0 − β(0 − g) at k = 1
    lam = project_simplex(torch.full((2,), 0.5) - 0.1 * (y @ y.t()) @ torch.full((2,), 0.5))
    assert_close(w.applied, lam)
    assert_close(g, lam @ y)


def test_simplex_projection_by_hand():
    assert_close(project_simplex(torch.tensor([0.5, 0.5])), torch.tensor([0.5, 0.5]))
    assert_close(project_simplex(torch.tensor([2.0, 0.0])), torch.tensor([1.0, 0.0]))
    assert_close(project_simplex(torch.tensor([0.6, 0.3, -0.5])), torch.tensor([0.65, 0.35, 0.0]))


def _loss_weights(name: str, values: list[float], **options: object) -> tuple[Tensor, Weighting]:
    w = build(name, **options)
    losses = {t: torch.tensor(v, requires_grad=True) for t, v in zip(TASKS, values)}
    w.backward(losses, None)
    grads = torch.stack([losses[t].grad for t in TASKS])
    assert_close(grads, w.applied)  # the gradient each loss receives is the logged weight
    return grads, w


def test_dwa_is_the_softmax_of_loss_ratios_with_temperature():
    w = build("dwa", temperature=2.0)
    assert_close(_weights_now(w, [1.0, 2.0, 3.0]), torch.ones(3))  # equal for the first two epochs
    w.end_epoch(torch.tensor([1.0, 2.0, 4.0]))
    assert_close(_weights_now(w, [1.0, 2.0, 3.0]), torch.ones(3))
    w.end_epoch(torch.tensor([0.5, 2.0, 2.0]))
    r = [0.5, 1.0, 0.5]
    e = [math.exp(v / 2.0) for v in r]
    assert_close(_weights_now(w, [1.0, 2.0, 3.0]), torch.tensor([3 * v / sum(e) for v in e]))


def _weights_now(w: Weighting, values: list[float]) -> Tensor:
    w.backward({t: torch.tensor(v, requires_grad=True) for t, v in zip(TASKS, values)}, None)
    return w.applied


def test_gls_weights_are_the_geometric_mean_over_t_times_each_loss():
    grads, _ = _loss_weights("gls", [1.0, 2.0, 4.0])
    gm = (1.0 * 2.0 * 4.0) ** (1 / 3)
    assert_close(grads, torch.tensor([gm / (3 * v) for v in (1.0, 2.0, 4.0)]))


def test_log_losses_divide_each_gradient_by_its_loss():
    grads, _ = _loss_weights("log_losses", [0.5, 2.0, 4.0])
    assert_close(grads, torch.tensor([2.0, 0.5, 0.25]))


def test_db_mtl_two_steps_by_hand():
    a1, b1 = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])
    losses, m = two_task(a1, b1)
    values = [float(v.detach()) for v in losses.values()]
    w = build("db_mtl", ["a", "b"], beta=0.9, beta_sigma=0.0)
    w.backward(losses, m)
    # step 1: buffer = g/L + 0.9·(0 − g/L) = 0.1·g/L; α_t = max‖buffer‖ / ‖buffer_t‖
    buf = torch.stack([0.1 * a1 / values[0], 0.1 * b1 / values[1]])
    norms = buf.norm(dim=1)
    assert_close(m.backbone.weight.grad[0], (norms.max() / norms) @ buf)
    # the task branches get the gradient of Σ log L: 3/L_a and 5/L_b
    assert_close(m.heads["a"].weight.grad, torch.tensor([[3.0 / values[0]]]))
    assert_close(m.heads["b"].weight.grad, torch.tensor([[5.0 / values[1]]]))
    a2, b2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, -2.0])
    losses, m2 = two_task(a2, b2)
    values2 = [float(v.detach()) for v in losses.values()]
    w.backward(losses, m2)
    now = torch.stack([a2 / values2[0], b2 / values2[1]])
    buf = now + 0.9 * (buf - now)
    norms = buf.norm(dim=1)
    assert_close(m2.backbone.weight.grad[0], (norms.max() / norms) @ buf)


def test_imtl_l_weights_are_the_exponentiated_scales_and_learn_them():
    w = build("imtl_l")
    with torch.no_grad():
        w.scalarizer.log_scale.copy_(torch.tensor([0.0, 1.0, -1.0]))
    losses = {t: torch.tensor(v, requires_grad=True) for t, v in zip(TASKS, [2.0, 0.5, 3.0])}
    w.backward(losses, None)
    assert_close(w.applied, torch.exp(torch.tensor([0.0, 1.0, -1.0])))
    # d/ds (e^s L − s) = e^s L − 1
    assert_close(w.scalarizer.log_scale.grad, torch.exp(torch.tensor([0.0, 1.0, -1.0])) * torch.tensor([2.0, 0.5, 3.0])
                 - 1)


def test_famo_weights_and_its_logit_update_by_hand():
    values = [0.5, 2.0, 4.0]
    grads, w = _loss_weights("famo", values, lr=0.025, weight_decay=0.0)
    # z = softmax(0) uniform, c = 1/Σ(z/L): w_t = (1/L_t) / Σ 1/L
    inv = torch.tensor([1 / v for v in values])
    assert_close(grads, inv / inv.sum())
    after = torch.tensor([0.25, 1.9, 3.0])  # task a fell most, task b least
    w.after_step(lambda: dict(zip(TASKS, after)))
    delta = torch.log(torch.tensor(values)) - torch.log(after)
    # Adam's first step is lr·sign(gradient); the softmax Jacobian at uniform z gives z(δ − mean δ)
    assert_close(w.famo._w.detach(), -0.025 * torch.sign(delta - delta.mean()), rtol=1e-4, atol=1e-6)


def test_stch_sums_log_losses_in_warmup_then_is_a_smoothed_maximum_of_normalised_logs():
    grads, w = _loss_weights("stch", [0.5, 2.0, 4.0], mu=0.5, warmup_epochs=1)
    assert_close(grads, torch.tensor([2.0, 0.5, 0.25]))
    w.end_epoch(torch.tensor([1.0, 1.0, 2.0]))  # the nadir point
    values = torch.tensor([0.5, 2.0, 4.0])
    grads, _ = _loss_weights_from(w, values)
    y = torch.log(values / torch.tensor([1.0, 1.0, 2.0]))
    # d/dL_t of T·μ·logsumexp(log(L/z)/μ) = T·softmax(y/μ)_t / L_t
    assert_close(grads, 3 * torch.softmax(y / 0.5, dim=0) / values)


def _loss_weights_from(w: Weighting, values: Tensor) -> tuple[Tensor, Weighting]:
    losses = {t: v.clone().requires_grad_(True) for t, v in zip(TASKS, values)}
    w.backward(losses, None)
    return torch.stack([losses[t].grad for t in TASKS]), w


def test_gradnorm_weight_gradient_and_renormalisation_by_hand():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])  # norms 5 and 1 on the shared layer
    losses, m = two_task(a, b)
    w = build("gradnorm", ["a", "b"], alpha=1.0)
    w.backward(losses, m)
    # first step: L/L(0) = 1, r = 1; mean norm Ḡ = 3; gradient sign(w n − Ḡ)·n = (+5, −1)
    assert_close(w.task_weights.grad, torch.tensor([5.0, -1.0]))
    assert_close(m.backbone.weight.grad[0], a + b)  # weights start at 1
    with torch.no_grad():
        w.task_weights.copy_(torch.tensor([0.5, 2.5]))
    w.after_step(lambda: {})
    assert_close(w.task_weights.detach(), torch.tensor([1 / 3, 5 / 3]))


# -- the wrappers pass the Jacobian of the shared parameters, tasks in order ------------------------

JD = [n for n in ALL if WEIGHTINGS.entry(n).meta.get("implementation") == "torchjd"
      and WEIGHTINGS.entry(n).meta["level"] == "gradient"]


class Recorder(nn.Module):
    def __init__(self, out: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.seen: list[Tensor] = []
        self.out = out

    def forward(self, m: Tensor) -> Tensor:
        self.seen.append(m.clone())
        return self.out(m)


@pytest.mark.parametrize("name", JD)
def test_a_torchjd_method_receives_the_shared_jacobian_in_task_order(name):
    _available(name)
    model = Tiny()
    x, y = problem(8)
    losses, rep = model.losses(x, y)
    w = build(name)
    shared = model.shared_parameters()
    wrt = rep if w.through == "representation" else shared
    expected = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], wrt, retain_graph=True)])
                            for t in TASKS])
    heads = {t: torch.autograd.grad(losses[t], model.heads[t].weight, retain_graph=True)[0] for t in TASKS}
    inner = "aggregator" if hasattr(w, "aggregator") else "weighting"
    gramian = inner == "weighting" and hasattr(w, "weigh")
    weights = torch.tensor([0.2, 0.3, 0.5])
    setattr(w, inner, Recorder((lambda m: weights) if inner == "weighting" else (lambda m: weights @ m)))
    if w.through == "representation":  # the combined gradient of z, back-propagated through the encoder
        want = torch.autograd.grad(rep[0], shared, (weights @ expected).view_as(rep[0]), retain_graph=True)
    else:
        want = torch.split(weights @ expected, [p.numel() for p in shared])
    total = w.backward(losses, model, rep)
    seen = getattr(w, inner).seen[0]
    assert_close(seen, expected @ expected.t() if gramian else expected, rtol=1e-5, atol=1e-6)
    for p, g in zip(shared, want):
        assert_close(p.grad, g.view_as(p), rtol=1e-5, atol=1e-6)
    for t in TASKS:  # the task branches get the plain sum's gradient
        assert_close(model.heads[t].weight.grad, heads[t])
    assert_close(total, sum(losses.values()).detach())


# -- every method trains, resumes, runs under bf16 -------------------------------------------------

def _available(name: str) -> None:
    """Skip, saying why, when the solver ``name`` needs (``mtlbench[solvers]``) is not installed."""
    solver = WEIGHTINGS.entry(name).meta.get("solver")
    if solver:
        for module in EXTRAS[solver][0]:
            pytest.importorskip(module, reason=f"{name} needs {EXTRAS[solver][1]}, not installed")


@pytest.mark.parametrize("name", ALL)
def test_every_method_lowers_every_task_loss(name):
    _available(name)
    x, y = problem()
    model = Tiny()
    history = train(build(name), model, x, y, steps=150)
    first, last = history[0], history[-1]
    for t in TASKS:
        assert last[t] < 0.95 * first[t], f"{name}: task {t} went from {first[t]:.4f} to {last[t]:.4f}"


def _roundtrip(module: nn.Module) -> dict[str, object]:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # as checkpoints are read


@pytest.mark.parametrize("name", ALL)
def test_a_method_resumed_from_its_state_dict_continues_identically(name):
    _available(name)
    x, y = problem(32)

    def run(split: bool) -> Tensor:
        model, w = Tiny(), build(name)
        opt = torch.optim.Adam([*model.parameters(), *w.parameters()], lr=1e-2)
        torch.manual_seed(3)
        for i in range(1, 13):
            if split and i == 7:
                states = (_roundtrip(model), _roundtrip(w), opt.state_dict(), torch.get_rng_state())
                model, w = Tiny(seed=99), build(name)
                model.load_state_dict(states[0])
                w.load_state_dict(states[1])
                opt = torch.optim.Adam([*model.parameters(), *w.parameters()], lr=1e-2)
                opt.load_state_dict(states[2])
                torch.set_rng_state(states[3])
            step(w, model, opt, x, y)
            if i % 3 == 0:
                w.end_epoch(torch.stack(list(model.losses(x, y)[0].values())).detach())
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    assert torch.equal(run(False), run(True))


@pytest.mark.parametrize("name", ALL)
def test_every_method_runs_under_bf16_autocast_with_float32_geometry(name):
    _available(name)
    x, y = problem(16)
    model = Tiny()
    w = build(name)
    seen: list[Tensor] = []
    if isinstance(w, GradientWeighting):
        original = w.aggregate

        def spy(jacobian: Tensor) -> Tensor:
            seen.append(jacobian)
            return original(jacobian)
        w.aggregate = spy  # type: ignore[method-assign]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, shared = model.losses(x, y)
    assert shared[0].dtype == torch.bfloat16
    w.backward(losses, model, shared)
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.dtype == torch.float32
    assert all(j.dtype == torch.float32 for j in seen)
    assert w.applied is None or torch.isfinite(w.applied).all()


# -- two processes compute what one does on the global batch ----------------------------------------

DDP_STEPS = 3


def _ddp_run(name: str, options: Mapping[str, object], group: object | None, rank: int, world: int,
             blind: bool = False) -> Tensor:
    """Three steps on this process's share of a batch; ``blind``: the weighting is not told of the
    other process (the trainer still averages the gradients)."""
    x, y = problem(16)
    share = len(x) // world
    x, y = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
    model, w = Tiny(), build(name, **options)
    if group is not None and not blind:
        w.dist = group  # type: ignore[assignment]
    opt = torch.optim.SGD([*model.parameters(), *w.parameters()], lr=0.05)
    torch.manual_seed(5)

    def average() -> None:  # what the trainer averages: all but what the weighting averaged
        done = {id(p) for p in model.shared_parameters()} \
            if isinstance(w, GradientWeighting) and w.averages_shared and not blind else set()
        for p in [*model.parameters(), *w.parameters()]:
            if p.grad is not None and id(p) not in done:
                group.average_(p.grad)  # type: ignore[union-attr]

    for i in range(DDP_STEPS):
        step(w, model, opt, x, y, average if group is not None else None)
        if i == 0:
            w.end_epoch(torch.tensor([1.0, 2.0, 3.0]))
            w.end_epoch(torch.tensor([0.8, 1.0, 2.0]))
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


DDP_CASES = [(n, {}, False) for n in ALL] + \
    [(n, {"through": "representation"}, False) for n in ("pcgrad", "graddrop", "imtl_g")]
# the same without telling the weighting of the other process: these must then differ
BLIND = [("famo", {}, True), ("gls", {}, True), ("pcgrad", {}, True), ("mgda", {}, True),
         ("imtl_g", {"through": "representation"}, True)]


def _worker(rank: int, world: int, port: int, cases: list, out: dict) -> None:
    from mtlbench.engine.distributed import Dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        for name, options, blind in cases:
            out[(name, tuple(sorted(options.items())), blind, rank)] = _ddp_run(
                name, options, Dist(rank, world, rank), rank, world, blind)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_every_method_in_two_processes_matches_one_process_on_the_global_batch():
    cases = []
    for name, options, blind in DDP_CASES + BLIND:
        try:
            _available(name)
        except pytest.skip.Exception:
            continue
        cases.append((name, options, blind))
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), cases, out), nprocs=2, join=True)
        results = dict(out)
    failures = []
    for name, options, blind in cases:
        one = _ddp_run(name, options, None, 0, 1)
        for rank in range(2):
            two = results[(name, tuple(sorted(options.items())), blind, rank)]
            close = torch.allclose(one, two, rtol=1e-4, atol=1e-5)
            if close == blind:
                failures.append(f"{name} {options} rank {rank}{' (blind)' if blind else ''}: max diff "
                                f"{float((one - two).abs().max()):.2e}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_method_trains_through_mtlbench_run(name, tmp_path):
    import json

    from tests.conftest import TINY_ARGS, invoke

    _available(name)
    result = invoke("run", *TINY_ARGS, "--weighting", name, "--run-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]
    assert all(math.isfinite(v) for r in log for v in r["train"].values())
    if name != "graddrop":  # its update is not a weighted sum: no weights
        assert all(list(r["weights"]) == ["depth", "seg", "edge"] for r in log)
