"""Loss weightings and gradient-manipulation methods, behind one interface (:mod:`.base`)."""

from mtlbench.weighting import gradient as _gradient  # noqa: F401  (registers the gradient-level methods)
from mtlbench.weighting.base import GradientWeighting, GramianWeighting, LossWeighting, Weighting
from mtlbench.weighting.methods import FixedWeighting, UncertaintyWeighting

__all__ = ["FixedWeighting", "GradientWeighting", "GramianWeighting", "LossWeighting", "UncertaintyWeighting",
           "Weighting"]
