"""The contract test kit (mtlbench.testing) on every registered interaction, and on broken ones."""

from __future__ import annotations

import pytest
from torch import nn

from mtlbench.registry import INTERACTIONS
from mtlbench.testing import check_interaction


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


@pytest.mark.parametrize("module, fragment, identity", [
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
