"""Loss weightings and gradient-manipulation methods, behind one interface (:mod:`.base`)."""

from mtlbench.weighting.base import GradientWeighting, LossWeighting, Weighting
from mtlbench.weighting.methods import FixedWeighting, PCGrad, UncertaintyWeighting

__all__ = ["FixedWeighting", "GradientWeighting", "LossWeighting", "PCGrad", "UncertaintyWeighting",
           "Weighting"]
