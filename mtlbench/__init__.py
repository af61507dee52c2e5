"""mtlbench: a benchmark toolkit for multi-task dense prediction (depth, segmentation, edges).

Importing the package is cheap; registries fill on first use (see :mod:`mtlbench.registry`).
"""

from mtlbench import registry as _registry

__version__ = "0.1.0"


def _populate() -> None:
    # imported on first lookup only: the plugin loader pulls in every built-in module (torch)
    from mtlbench.plugins import populate

    populate()


_registry.on_first_lookup(_populate)
