"""The contract test kit: checks a plugin runs from its own pytest in one line.

    from mtlbench.testing import check_interaction

    def test_my_guidance_keeps_the_contract():
        check_interaction("my_guidance", identity_at_init=True)

One check per extension point, each taking a registered name or the factory itself:
:func:`check_interaction`, :func:`check_loss`, :func:`check_weighting`, :func:`check_model` and
:func:`check_dataset`. Each raises ``AssertionError`` naming the broken promise and returns a
:class:`Report` of what it checked and what it could only report (``torch.compile``, host syncs
off a GPU). Part of the public API (:mod:`mtlbench.api`, version 2).
"""

from mtlbench.testing.common import Report
from mtlbench.testing.datasets import check_dataset
from mtlbench.testing.interactions import check_interaction
from mtlbench.testing.losses import check_loss
from mtlbench.testing.models import check_model
from mtlbench.testing.tasks import check_task
from mtlbench.testing.weightings import check_weighting

__all__ = ["Report", "check_dataset", "check_interaction", "check_loss", "check_model", "check_task", "check_weighting"]
