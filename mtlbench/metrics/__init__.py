"""Streamed metrics: ``update`` per batch, ``compute`` once per split.

Definitions, conventions and how they differ from other toolkits: ``docs/evaluation.md``.
"""

from mtlbench.metrics.base import Metric
from mtlbench.metrics.depth import DepthMetrics
from mtlbench.metrics.edge import EdgeMetrics
from mtlbench.metrics.seg import SegMetrics

__all__ = ["DepthMetrics", "EdgeMetrics", "Metric", "SegMetrics"]
