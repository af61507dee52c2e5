"""Loss-level weightings: the step's gradient is that of one scalar made from the task losses.

Where torchjd has the scalarisation (GLS's geometric mean, IMTL-L, RLW, FAMO, STCH's smoothed
maximum) it is used; DWA, DB-MTL's log scale and GradNorm are written here (see each class).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torchjd.scalarization import FAMO as _FAMO
from torchjd.scalarization import IMTLL as _IMTLL
from torchjd.scalarization import STCH as _STCH
from torchjd.scalarization import GeometricMean as _GeometricMean
from torchjd.scalarization import Random as _Random

from mtlbench.models.base import MultiTaskModel
from mtlbench.options import Option
from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import LossWeighting, attribute_state, load_attribute_state


def _non_negative_weights(weights: Mapping[str, object]) -> str | None:
    bad = {k: v for k, v in weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
    return f"weights must be non-negative numbers, got {bad}" if bad else None


def positive(value: object) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 \
        else f"must be a number > 0, got {value!r}"


def non_negative(value: object) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
        else f"must be a number ≥ 0, got {value!r}"


class FixedWeighting(LossWeighting):
    """Σ_t w_t·L_t with constant weights (1 for tasks not named)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"weights given for tasks not trained: {', '.join(unknown)}")
        self.weights = {t: float(weights.get(t, 1.0)) for t in tasks}

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        terms = [self.weights[t] * loss for t, loss in losses.items()]
        return sum(terms[1:], terms[0])  # from the first term, not int 0: a Tensor, also to the type checker


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): Σ_t exp(−s_t)·L_t + s_t,
    with one learned log-variance s_t per task, initialised to 0. (torchjd's ``UW`` halves both
    terms; this form keeps the checkpoints of earlier runs loadable and is LibMTL's up to that
    factor.)"""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        total = self.log_vars.new_zeros(())
        for i, t in enumerate(self.tasks):
            total = total + torch.exp(-self.log_vars[i]) * losses[t] + self.log_vars[i]
        return total


class Scalarized(LossWeighting):
    """A torchjd scalariser of the loss vector."""

    def __init__(self, tasks: Sequence[str], scalarizer: nn.Module) -> None:
        super().__init__(tasks)
        self.scalarizer = scalarizer

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        return self.scalarizer(self.vector(losses))


class DWA(LossWeighting):
    """Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019): λ_t = T·softmax_t(r_t / temperature)
    with r_t = L̄_t(e−1) / L̄_t(e−2), the ratio of the two previous epochs' mean training losses;
    equal weights for the first two epochs.

    Written here rather than taken from torchjd, whose ``DWA`` averages the losses each process
    saw: under several processes the weights would differ between them. These come from the
    trainer's epoch means, which are averaged over the processes.
    """

    history: Tensor

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = float(temperature)
        # the mean training losses of the last two epochs, older first; NaN until seen
        self.register_buffer("history", torch.full((2, len(self.tasks)), float("nan")))

    def weights(self) -> Tensor:
        if torch.isnan(self.history).any():
            return torch.ones(len(self.tasks), device=self.history.device)
        rates = self.history[1] / self.history[0]
        return len(self.tasks) * torch.softmax(rates / self.temperature, dim=0)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        return (self.weights().to(self.history.device) * self.vector(losses)).sum()

    def end_epoch(self, losses: Tensor) -> None:
        self.history.copy_(torch.stack([self.history[1], losses.to(self.history)]))


class LogScale(LossWeighting):
    """DB-MTL's loss-scale balancing (Lin et al. 2023): Σ_t log(L_t + ε), so that each task's
    gradient is divided by its loss. The whole DB-MTL, which also rescales each task's tracked
    gradient to the largest norm, is the gradient-level ``db_mtl``."""

    def __init__(self, tasks: Sequence[str], eps: float = 1e-8) -> None:
        super().__init__(tasks)
        self.eps = float(eps)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        return torch.log(self.vector(losses) + self.eps).sum()


class FAMO(LossWeighting):
    """Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023), torchjd's ``FAMO``: the
    logits are stepped after each update from how much each loss fell on the same batch (one
    forward more per step, as in the paper's code)."""

    updates_after_step = True

    def __init__(self, tasks: Sequence[str], lr: float = 0.025, weight_decay: float = 1e-3) -> None:
        super().__init__(tasks)
        self.famo = _FAMO(len(self.tasks), lr=lr, weight_decay=weight_decay)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        return self.famo(self.vector(losses))

    def after_step(self, recompute: Callable[[], Mapping[str, Tensor]]) -> None:
        self.famo.update(self.dist.average_(self.vector(recompute()).detach().clone()))

    def get_extra_state(self) -> dict[str, object]:
        opt = self.famo._optimizer
        return {"attributes": attribute_state(self.famo), "optimizer": opt.state_dict() if opt else None}

    def set_extra_state(self, state: dict[str, object]) -> None:
        load_attribute_state(self.famo, state["attributes"])  # type: ignore[arg-type]
        if state["optimizer"] is not None:
            opt = torch.optim.Adam([self.famo._w], lr=self.famo.lr, weight_decay=self.famo.weight_decay)
            opt.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
            self.famo._optimizer = opt


class STCH(LossWeighting):
    """Smooth Tchebycheff scalarisation (Lin et al., ICML 2024): T·μ·log Σ_t exp(log(L_t / z_t) / μ),
    a smoothed maximum of the log-normalised losses, through torchjd's ``STCH``. As in the
    paper's code (and LibMTL's), the log losses are summed for ``warmup_epochs`` epochs and the
    nadir point z is each task's mean training loss of the last of them."""

    nadir: Tensor
    epochs: Tensor

    def __init__(self, tasks: Sequence[str], mu: float = 1.0, warmup_epochs: int = 1) -> None:
        super().__init__(tasks)
        self.stch = _STCH(mu, weights=torch.ones(len(self.tasks)))
        self.warmup_epochs = int(warmup_epochs)
        self.register_buffer("nadir", torch.ones(len(self.tasks)))
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        logs = torch.log(self.vector(losses) + 1e-20)
        if int(self.epochs) < self.warmup_epochs:
            return logs.sum()
        self.stch.weights = torch.ones_like(logs)
        return len(self.tasks) * self.stch(logs - torch.log(self.nadir))

    def end_epoch(self, losses: Tensor) -> None:
        self.epochs += 1
        if int(self.epochs) == self.warmup_epochs:
            self.nadir.copy_(losses)


class GradNorm(LossWeighting):
    """GradNorm (Chen et al., ICML 2018): learned weights w_t whose gradient-norm loss
    Σ_t |w_t·‖∇_W L_t‖ − Ḡ·r_t^α| pulls each task's gradient norm on the last shared layer W towards
    the mean norm Ḡ times its relative inverse training rate r_t = (L_t/L_t(0)) / mean(L/L(0));
    renormalised to Σ w = T after each step.

    Written here (torchjd has no GradNorm). The gradient of that loss with respect to w_t is
    sign(·)·‖∇_W L_t‖, which needs no second-order pass; the targets are constants, as in the paper.
    W is the last shared parameter with two or more dimensions (a convolution or linear weight).
    """

    updates_after_step = True

    initial: Tensor

    def __init__(self, tasks: Sequence[str], alpha: float = 1.5) -> None:
        super().__init__(tasks)
        self.alpha = float(alpha)
        self.task_weights = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial", torch.full((len(self.tasks),), float("nan")))

    def backward(self, losses: Mapping[str, Tensor], model: MultiTaskModel,
                 shared: Sequence[Tensor] | None = None, scale: float | Tensor = 1.0) -> Tensor:
        layers = [p for p in model.shared_parameters() if p.requires_grad and p.dim() >= 2]
        if not layers:
            raise ValueError(f"GradNorm needs a shared layer and {type(model).__name__} has no shared weight matrix")
        local = self.vector(losses)
        values = self.dist.average_(local.detach().clone())
        if torch.isnan(self.initial).any():
            self.initial.copy_(values)
        grads = torch.stack([torch.autograd.grad(v * scale, layers[-1], retain_graph=True)[0].reshape(-1).float()
                             for v in local])
        norms = self.dist.average_(grads / scale).norm(dim=1)
        w = self.task_weights.detach()
        ratios = values / self.initial
        target = (w * norms).mean() * (ratios / ratios.mean()) ** self.alpha
        self.task_weights.grad = torch.sign(w * norms - target) * norms * scale
        self.applied = w.clone()
        torch.autograd.backward((self.applied * local).sum() * scale)
        return (self.applied * values).sum()

    def after_step(self, recompute: Callable[[], Mapping[str, Tensor]]) -> None:
        with torch.no_grad():  # a weight stepped below zero would ascend its loss
            w = self.task_weights.clamp_(min=1e-6)
            w.mul_(len(self.tasks) / w.sum())


# -- registrations ---------------------------------------------------------------------------------

@WEIGHTINGS.register("fixed", level="loss", paper="", implementation="mtlbench", options={
    "weights": Option({}, "constant weight per task, e.g. {depth = 2.0}; tasks not named weigh 1",
                      _non_negative_weights),
})
def fixed(tasks: Sequence[str], weights: Mapping[str, float]) -> nn.Module:
    """Weighted sum with constant per-task weights (default 1 each: equal weighting, EW)."""
    return FixedWeighting(tasks, weights)


@WEIGHTINGS.register("uncertainty", level="loss", paper="Kendall, Gal, Cipolla, CVPR 2018", implementation="mtlbench")
def uncertainty(tasks: Sequence[str]) -> nn.Module:
    """Learned homoscedastic-uncertainty weights (UW)."""
    return UncertaintyWeighting(tasks)


@WEIGHTINGS.register("dwa", level="loss", paper="Liu, Johns, Davison, CVPR 2019", implementation="mtlbench", options={
    "temperature": Option(2.0, "softmax temperature; larger is more uniform", positive),
})
def dwa(tasks: Sequence[str], temperature: float) -> nn.Module:
    """Dynamic Weight Average: weights from the ratio of the last two epochs' losses."""
    return DWA(tasks, temperature)


@WEIGHTINGS.register("rlw", level="loss", paper="Lin et al., TMLR 2022", implementation="torchjd")
def rlw(tasks: Sequence[str]) -> nn.Module:
    """Random Loss Weighting: softmax of a standard normal draw each step."""
    return Scalarized(tasks, _Random())


@WEIGHTINGS.register("gls", level="loss", paper="Chennupati et al., CVPR Workshops 2019", implementation="torchjd")
def gls(tasks: Sequence[str]) -> nn.Module:
    """Geometric Loss Strategy: the geometric mean of the losses."""
    return Scalarized(tasks, _GeometricMean())


@WEIGHTINGS.register("imtl_l", level="loss", paper="Liu et al., ICLR 2021", implementation="torchjd")
def imtl_l(tasks: Sequence[str]) -> nn.Module:
    """IMTL-L: learned scales, Σ_t exp(s_t)·L_t − s_t."""
    return Scalarized(tasks, _IMTLL(len(tasks)))


@WEIGHTINGS.register("log_losses", level="loss", paper="Lin et al., arXiv 2023 (DB-MTL's loss-scale part)",
                     implementation="mtlbench")
def log_losses(tasks: Sequence[str]) -> nn.Module:
    """DB-MTL's loss-scale balancing alone: the sum of the log losses (db_mtl is the whole method)."""
    return LogScale(tasks)


@WEIGHTINGS.register("famo", level="loss", paper="Liu et al., NeurIPS 2023", implementation="torchjd", options={
    "lr": Option(0.025, "learning rate of the task logits", positive),
    "weight_decay": Option(1e-3, "weight decay of the task logits", non_negative),
})
def famo(tasks: Sequence[str], lr: float, weight_decay: float) -> nn.Module:
    """Fast Adaptive Multitask Optimization: logits learned from the loss decreases."""
    return FAMO(tasks, lr, weight_decay)


@WEIGHTINGS.register("stch", level="loss", paper="Lin et al., ICML 2024", implementation="torchjd", options={
    "mu": Option(1.0, "smoothing: small is close to the maximum of the normalised log losses", positive),
    "warmup_epochs": Option(1, "epochs of summed log losses that estimate the nadir point",
                            lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            else f"must be an integer ≥ 1, got {v!r}"),
})
def stch(tasks: Sequence[str], mu: float, warmup_epochs: int) -> nn.Module:
    """Smooth Tchebycheff scalarisation of the nadir-normalised log losses."""
    return STCH(tasks, mu, warmup_epochs)


@WEIGHTINGS.register("gradnorm", level="loss", paper="Chen et al., ICML 2018", implementation="mtlbench", options={
    "alpha": Option(1.5, "strength of the pull towards equal training rates", non_negative),
})
def gradnorm(tasks: Sequence[str], alpha: float) -> nn.Module:
    """GradNorm: weights learned to balance the gradient norms on the last shared layer."""
    return GradNorm(tasks, alpha)
