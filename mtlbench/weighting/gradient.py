"""Gradient-level methods: the tasks' gradients of the shared parameters (or representation)
combined into one.

Every aggregation torchjd implements is torchjd's (its Gramian weightings where the method needs
only inner products, its matrix weightings and aggregators otherwise); MoCo, which torchjd lacks,
is written here. Solvers torchjd needs for a few methods come in extras: a missing one is an error
naming the ``pip install`` that adds it.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torchjd.aggregation as jd
from torch import Tensor, nn

from mtlbench.options import Option
from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import GradientWeighting, GramianWeighting, attribute_state, load_attribute_state
from mtlbench.weighting.methods import non_negative, positive

THROUGH = Option("parameters", "combine the gradients of the shared 'parameters' or of the shared 'representation' "
                 "(MGDA-UB's bound: one backward of the encoder)",
                 lambda v: None if v in ("parameters", "representation")
                 else f"must be 'parameters' or 'representation', got {v!r}")

# the solver extras: the Python modules torchjd imports, and the mtlbench extra that installs them
EXTRAS = {"quadprog": (("quadprog", "qpsolvers"), "mtlbench[solvers]"),
          "cvxpy": (("cvxpy", "clarabel"), "mtlbench[solvers]"),
          "ecos": (("cvxpy", "ecos"), "mtlbench[solvers]")}


def need(solver: str, method: str) -> None:
    """Raise, naming the fix, when the solver ``method`` needs is not installed."""
    modules, extra = EXTRAS[solver]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"{method} needs the {solver} solver ({', '.join(missing)} missing): "
                         f"pip install '{extra}'")


class KeepsAttributes(nn.Module):
    """Checkpoints the plain attributes (torchjd keeps its methods' state there)."""

    def get_extra_state(self) -> dict[str, Any]:
        return attribute_state(self)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        load_attribute_state(self, state)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        # torchjd registers its state tensors as buffers that stay None until the first step: a
        # fresh module must hold a tensor there before the checkpoint's can be copied in
        for key, value in state_dict.items():
            path, _, name = key.rpartition(".")
            module = self.get_submodule(path) if path else self
            if name in module._buffers and module._buffers[name] is None and isinstance(value, Tensor):
                module._buffers[name] = torch.empty_like(value)
        return super().load_state_dict(state_dict, strict, assign)


class Gramian(GramianWeighting, KeepsAttributes):
    """A torchjd Gramian weighting."""

    def __init__(self, tasks: Sequence[str], weighting: nn.Module, through: str = "parameters") -> None:
        super().__init__(tasks, through)
        self.weighting = weighting

    def weigh(self, gramian: Tensor) -> Tensor:
        return self.weighting(gramian)


class MatrixWeighted(GradientWeighting, KeepsAttributes):
    """A torchjd weighting of the gradient matrix itself: the update is Σ_t w_t·g_t."""

    def __init__(self, tasks: Sequence[str], weighting: nn.Module, through: str = "parameters",
                 representation_ok: bool = True) -> None:
        self.representation_ok = representation_ok  # type: ignore[misc]
        super().__init__(tasks, through)
        self.weighting = weighting

    def aggregate(self, jacobian: Tensor) -> Tensor:
        self.applied = self.weighting(jacobian).detach()
        return self.applied @ jacobian


class NashMTL(MatrixWeighted):
    """torchjd's Nash-MTL, whose convex problem (cvxpy objects, not checkpointed) is rebuilt on
    resume."""

    def aggregate(self, jacobian: Tensor) -> Tensor:
        with warnings.catch_warnings():  # cvxpy's advice on re-solving, once per step otherwise
            warnings.filterwarnings("ignore", message="You are solving a parameterized problem that is not DPP")
            return super().aggregate(jacobian)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        nash: Any = self.weighting
        if nash.step > 0:
            nash._init_optim_problem()


class Aggregated(GradientWeighting, KeepsAttributes):
    """A torchjd aggregator whose update is not a weighted sum of the gradients (GradDrop's
    per-coordinate masks, ConFIG's normalised solve): no weights are logged."""

    def __init__(self, tasks: Sequence[str], aggregator: nn.Module, through: str = "parameters") -> None:
        super().__init__(tasks, through)
        self.aggregator = aggregator

    def aggregate(self, jacobian: Tensor) -> Tensor:
        self.applied = None
        return self.aggregator(jacobian)


def project_simplex(v: Tensor) -> Tensor:
    """The Euclidean projection of ``v`` on the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    cssv = torch.cumsum(u, 0) - 1
    k = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = int((u - cssv / k > 0).nonzero().max())
    return torch.clamp(v - cssv[rho] / (rho + 1), min=0)


class MoCo(GradientWeighting, KeepsAttributes):
    """MoCo (Fernando et al., ICLR 2023): tracked gradients y_t ← y_t − β_k(y_t − g_t), weights
    λ ← Π_Δ(λ − γ_k(YYᵀ + ρI)λ), update Σ_t λ_t·y_t, with β_k = β/k^σβ and γ_k = γ/k^σγ.

    Written here (torchjd has no MoCo). Π_Δ is the Euclidean projection on the simplex, as in the
    paper; LibMTL's code takes a softmax instead. The tracked gradients are a T×P copy of the shared
    parameters' gradients, so it works through the parameters only.
    """

    representation_ok = False

    def __init__(self, tasks: Sequence[str], beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0) -> None:
        super().__init__(tasks)
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = beta, beta_sigma, gamma, gamma_sigma, rho
        self._y: Tensor | None = None
        self._lambda: Tensor | None = None
        self._step = 0

    def aggregate(self, jacobian: Tensor) -> Tensor:
        t = jacobian.shape[0]
        if self._y is None or self._lambda is None:
            self._y = torch.zeros_like(jacobian)
            self._lambda = torch.full((t,), 1.0 / t, device=jacobian.device)
        self._step += 1
        k = self._step
        y = self._y = self._y.to(jacobian.device)
        y -= self.beta / k ** self.beta_sigma * (y - jacobian)
        lam = self._lambda.to(jacobian.device)
        step = (y @ y.t() + self.rho * torch.eye(t, device=y.device)) @ lam
        self._lambda = project_simplex(lam - self.gamma / k ** self.gamma_sigma * step)
        self.applied = self._lambda.clone()
        return self._lambda @ y


class DBMTL(GradientWeighting, KeepsAttributes):
    """DB-MTL (Lin et al. 2023): the gradients of the log losses (∇L_t / L_t: scale balance),
    tracked as an EMA, each rescaled to the largest tracked norm (magnitude balance), summed.
    The EMA rate at step k is β/k^σβ. The task branches receive the gradient of Σ_t log L_t.

    Written here (torchjd has no DB-MTL). The rows are the processes' average gradient divided by
    their average loss, the gradient of the log of the global loss.
    """

    representation_ok = False

    def __init__(self, tasks: Sequence[str], beta: float = 0.9, beta_sigma: float = 0.0) -> None:
        super().__init__(tasks)
        self.beta, self.beta_sigma = beta, beta_sigma
        self._buffer: Tensor | None = None
        self._step = 0

    def branch_weights(self) -> Tensor | None:
        assert self.loss_values is not None
        return 1.0 / (self.loss_values + 1e-8)

    def aggregate(self, jacobian: Tensor) -> Tensor:
        assert self.loss_values is not None
        grads = jacobian / (self.loss_values + 1e-8)[:, None]
        self._step += 1
        buffer = torch.zeros_like(grads) if self._buffer is None else self._buffer.to(grads.device)
        self._buffer = grads + self.beta / self._step ** self.beta_sigma * (buffer - grads)
        norms = self._buffer.norm(dim=1)
        alpha = norms.max() / (norms + 1e-8)
        # as a weighting of the raw gradients: α_t/L_t on the current ones (the EMA adds the past)
        self.applied = (alpha * (1 - self.beta / self._step ** self.beta_sigma) / (self.loss_values + 1e-8)).detach()
        return alpha @ self._buffer


# -- registrations ---------------------------------------------------------------------------------

Factory = Callable[..., nn.Module]


def _register(name: str, paper: str, doc: str, options: dict[str, Option] | None = None,
              solver: str | None = None, implementation: str = "torchjd",
              through: bool = True) -> Callable[[Factory], Factory]:
    opts = {"through": THROUGH, **(options or {})} if through else dict(options or {})
    meta: dict[str, Any] = {"level": "gradient", "paper": paper, "implementation": implementation}
    if solver:
        meta["solver"], meta["extra"] = solver, EXTRAS[solver][1]

    def wrap(factory: Factory) -> Factory:
        factory.__doc__ = doc
        return WEIGHTINGS.register(name, options=opts, **meta)(factory)
    return wrap


@_register("mgda", "Sener, Koltun, NeurIPS 2018", "MGDA: the minimum-norm point of the gradients' convex hull "
           "(Frank-Wolfe).")
def mgda(tasks: Sequence[str], through: str) -> nn.Module:
    return Gramian(tasks, jd.MGDAWeighting(), through)


@_register("mgda_ub", "Sener, Koltun, NeurIPS 2018", "MGDA-UB: MGDA on the gradients of the shared "
           "representation (its upper bound).", through=False)
def mgda_ub(tasks: Sequence[str]) -> nn.Module:
    return Gramian(tasks, jd.MGDAWeighting(), "representation")


@_register("pcgrad", "Yu et al., NeurIPS 2020", "PCGrad: conflicting gradients projected off each other.")
def pcgrad(tasks: Sequence[str], through: str) -> nn.Module:
    return Gramian(tasks, jd.PCGradWeighting(), through)


@_register("graddrop", "Chen et al., NeurIPS 2020", "GradDrop: per-coordinate sign dropout by gradient "
           "sign purity.")
def graddrop(tasks: Sequence[str], through: str) -> nn.Module:
    return Aggregated(tasks, jd.GradDrop(), through)


@_register("gradvac", "Wang et al., ICLR 2021", "GradVac: gradients pulled towards an EMA of their "
           "pairwise cosine similarity.", {"beta": Option(0.5, "EMA rate of the target similarities", positive)})
def gradvac(tasks: Sequence[str], through: str, beta: float) -> nn.Module:
    return Gramian(tasks, jd.GradVacWeighting(beta=beta), through)


@_register("cagrad", "Liu et al., NeurIPS 2021", "CAGrad: the direction maximising the worst task's "
           "improvement near the mean gradient.", {"c": Option(0.4, "radius around the mean gradient (0: the mean)",
                                                              non_negative)}, solver="cvxpy")
def cagrad(tasks: Sequence[str], through: str, c: float) -> nn.Module:
    need("cvxpy", "cagrad")
    return Gramian(tasks, jd.CAGradWeighting(c=c), through)


@_register("nash_mtl", "Navon et al., ICML 2022", "Nash-MTL: the Nash bargaining solution of the tasks.",
           {"update_weights_every": Option(1, "steps between solves", positive),
            "max_norm": Option(1.0, "clip of the combined gradient's norm (0: none)", non_negative)}, solver="ecos")
def nash_mtl(tasks: Sequence[str], through: str, update_weights_every: int, max_norm: float) -> nn.Module:
    need("ecos", "nash_mtl")
    agg = jd.NashMTL(n_tasks=len(tasks), update_weights_every=int(update_weights_every), max_norm=max_norm)
    return NashMTL(tasks, agg.weighting, through)


@_register("imtl_g", "Liu et al., ICLR 2021", "IMTL-G: the combination with equal projections on every "
           "task's unit gradient.")
def imtl_g(tasks: Sequence[str], through: str) -> nn.Module:
    return Gramian(tasks, jd.IMTLGWeighting(), through)


@_register("aligned_mtl", "Senushkin et al., CVPR 2023", "Aligned-MTL: the gradients' condition number "
           "made one by aligning their principal components.")
def aligned_mtl(tasks: Sequence[str], through: str) -> nn.Module:
    return Gramian(tasks, jd.AlignedMTLWeighting(), through)


@_register("upgrad", "Quinton, Rey, arXiv 2024 (Jacobian descent)", "UPGrad: each gradient projected onto "
           "the dual cone of all, then averaged: no task's loss increases to first order.", solver="quadprog")
def upgrad(tasks: Sequence[str], through: str) -> nn.Module:
    need("quadprog", "upgrad")
    return Gramian(tasks, jd.UPGradWeighting(), through)


@_register("dualproj", "Quinton, Rey, arXiv 2024 (after Lopez-Paz, Ranzato 2017)", "DualProj: the mean "
           "gradient projected onto the dual cone of the gradients.", solver="quadprog")
def dualproj(tasks: Sequence[str], through: str) -> nn.Module:
    need("quadprog", "dualproj")
    return Gramian(tasks, jd.DualProjWeighting(), through)


class ConFIG(GramianWeighting):
    """ConFIG (Liu et al., ICLR 2025): the direction d = pinv(U)·1 of the unit gradients U (rows
    g_t/‖g_t‖), scaled to Σ_t g_t·d̂.

    Written here from the Gramian instead of torchjd's ``ConFIG``, whose pseudo-inverse of the
    T×P matrix U fails on CUDA once P is a ResNet's (cusolver's gesvdj refuses the size; found
    by ``benchmarks/gpu.sh``). pinv(U) = Uᵀ(UUᵀ)⁺ makes it a weighted sum: with D = diag(‖g_t‖)
    and c = D⁻¹(D⁻¹GD⁻¹)⁺1, d = Jᵀc and the update is (1ᵀGc / cᵀGc)·Jᵀc, the same vector
    (checked against torchjd's on the CPU).
    """

    def weigh(self, gramian: Tensor) -> Tensor:
        g = gramian.double()
        norms = g.diagonal().clamp(min=0).sqrt()
        inv = torch.where(norms > 0, 1 / norms, torch.zeros_like(norms))  # a zero gradient has no direction
        # cut at the precision the Gramian was computed in, not float64's: its rounding noise
        # must not be inverted (near-parallel float32 gradients would get weights of ±1e5)
        rtol = len(norms) * torch.finfo(gramian.dtype).eps
        cosines = inv[:, None] * g * inv[None, :]
        c = inv * (torch.linalg.pinv(cosines, rtol=rtol, hermitian=True) @ torch.ones_like(norms))
        length = c @ g @ c
        if length <= 0:
            return torch.zeros_like(norms, dtype=gramian.dtype)
        return ((g.sum(0) @ c) / length * c).to(gramian.dtype)


@_register("config", "Liu et al., ICLR 2025", "ConFIG: the conflict-free direction with equal cosine to "
           "every gradient, scaled by their projections.", implementation="mtlbench")
def config(tasks: Sequence[str], through: str) -> nn.Module:
    return ConFIG(tasks, through)


@_register("fairgrad", "Ban, Ji, ICML 2024", "FairGrad: α-fair utility maximisation over the tasks' "
           "improvements.", {"alpha": Option(1.0, "fairness (1: proportional fairness)", positive)})
def fairgrad(tasks: Sequence[str], through: str, alpha: float) -> nn.Module:
    return Gramian(tasks, jd.FairGradWeighting(alpha=alpha), through)


# MoDo and SDMGrad take J₁J₂ᵀ of two independent batches; the trainer gives one batch per step, so
# they receive its Gramian JJᵀ (as LibMTL's single-batch use does): see docs/weighting.md
@_register("modo", "Chen et al., NeurIPS 2023", "MoDo: MGDA weights by one projected step each "
           "iteration.", {"gamma": Option(1e-3, "step size of the weights", positive),
                          "rho": Option(0.1, "regularisation of the weights", non_negative)})
def modo(tasks: Sequence[str], through: str, gamma: float, rho: float) -> nn.Module:
    return Gramian(tasks, jd.MoDoWeighting(gamma=gamma, rho=rho), through)


@_register("sdmgrad", "Xiao et al., NeurIPS 2023", "SDMGrad: MGDA weights regularised towards the "
           "mean direction, by inner projected steps.",
           {"lambda_": Option(0.3, "pull towards the mean direction", non_negative)})
def sdmgrad(tasks: Sequence[str], through: str, lambda_: float) -> nn.Module:
    return Gramian(tasks, jd.SDMGradWeighting(lambda_=lambda_), through)


@_register("excess_mtl", "He et al., ICML 2024", "ExcessMTL: weights raised for tasks with large excess "
           "risk, estimated from squared gradients.",
           {"robust_step_size": Option(1e-2, "step size of the weights", positive)}, through=False)
def excess_mtl(tasks: Sequence[str], robust_step_size: float) -> nn.Module:
    return MatrixWeighted(tasks, jd.ExcessMTLWeighting(robust_step_size=robust_step_size),
                          representation_ok=False)


@_register("db_mtl", "Lin et al., arXiv 2023", "DB-MTL: log-loss gradients, tracked, each rescaled to the "
           "largest norm.", {"beta": Option(0.9, "EMA rate β of the tracked gradients", non_negative),
                             "beta_sigma": Option(0.0, "decay σ of the EMA rate (β/k^σ)", non_negative)},
           implementation="mtlbench", through=False)
def db_mtl(tasks: Sequence[str], beta: float, beta_sigma: float) -> nn.Module:
    return DBMTL(tasks, beta, beta_sigma)


@_register("rgw", "Lin et al., TMLR 2022", "Random Gradient Weighting: softmax of a standard normal draw "
           "weighs the gradients.")
def rgw(tasks: Sequence[str], through: str) -> nn.Module:
    return MatrixWeighted(tasks, jd.RandomWeighting(), through)


@_register("moco", "Fernando et al., ICLR 2023", "MoCo: tracked gradients and simplex-projected weights.",
           {"beta": Option(0.5, "tracking rate β", positive), "gamma": Option(0.1, "weight step γ", positive),
            "rho": Option(0.0, "regularisation ρ", non_negative)}, implementation="mtlbench", through=False)
def moco(tasks: Sequence[str], beta: float, gamma: float, rho: float) -> nn.Module:
    return MoCo(tasks, beta=beta, gamma=gamma, rho=rho)


