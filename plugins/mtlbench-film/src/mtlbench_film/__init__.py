"""FiLM guidance for mtlbench: the guide conditions the target channel-wise.

Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018: a feature map
is modulated as γ ⊙ x + β, with γ and β predicted from the conditioning input. Here the condition
is the guiding task's features, globally pooled, and the modulation is residual,
x ⊙ (1 + γ) + β, with the last layer zero so that the module starts as the identity. What differs
from the paper: its condition is a question embedding and its γ, β come from a GRU; here a
two-layer MLP of the pooled guide gives them.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "1"


class FiLMGuidance(nn.Module):
    """target ⊙ (1 + γ(s)) + β(s), with [γ, β] = MLP(mean over positions of the source)."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        gamma, beta = self.mlp(source.mean(dim=(2, 3))).chunk(2, dim=1)
        return target * (1 + gamma[..., None, None]) + beta[..., None, None]


def film(channels: int, hidden: int = 64) -> nn.Module:
    """FiLM (Perez et al., AAAI 2018): channel-wise scale and shift of the target from the pooled guide."""
    return FiLMGuidance(channels, hidden)


def register() -> None:
    """The ``mtlbench.plugins`` entry point: registers ``film`` (importing the module does not)."""
    hidden = Option(64, "width of the MLP that predicts γ and β", at_least(1))
    INTERACTIONS.register("film", options={"hidden": hidden}, identity_at_init=True)(film)
