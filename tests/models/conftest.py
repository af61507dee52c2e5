from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # the models here are tiny: one intra-op thread is fastest and does not oversubscribe a busy CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def x() -> torch.Tensor:
    """A batch of two 64×64 images."""
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)
