from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package")
def x() -> torch.Tensor:
    """A batch of two 64×64 images."""
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)
