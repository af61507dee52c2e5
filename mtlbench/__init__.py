"""mtlbench: a benchmark toolkit for multi-task dense prediction (depth, segmentation, edges).

Importing the package is cheap; registries fill on first use (see :mod:`mtlbench.registry`).
"""

__version__ = "0.1.0"
