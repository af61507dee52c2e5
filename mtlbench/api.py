"""The public plugin API of mtlbench, versioned.

A plugin imports what it extends from here and nowhere else::

    from mtlbench.api import INTERACTIONS, Option

    MTLBENCH_API = "2"   # in the entry point's module: the API major version the plugin is written for

    @INTERACTIONS.register("my_guidance", options={"dim": Option(64, "width", at_least(1))})
    def my_guidance(channels: int, dim: int) -> nn.Module: ...

What this module exports keeps working within a major version (``API_VERSION`` "2.x"): a minor
version adds, a major version may change or remove. Everything else in the package may change
without notice. The plugin loader refuses, with one warning naming it, a plugin whose module
declares ``MTLBENCH_API`` with a major version the host does not serve; the host goes on without
it. API 2 still serves plugins declaring 1 for what did not change (interactions, losses,
weightings, models, backbones, tasks); a dataset such a plugin registers is dropped with one
warning naming what to change (:data:`CHANGES`).

The extension points (``docs/plugins.md`` has the contract of each):

- ``INTERACTIONS``: ``factory(channels, **options) -> nn.Module`` with ``forward(target, source)``
  returning the refined target (same shape, residual included); optional
  ``attention_maps(target, source)``; ``identity_at_init=True`` in the registration promises it
  starts as the identity. Checked by :func:`mtlbench.testing.check_interaction`.
  ``GuidedAttention`` (that of *Beneath the Surface*) is exported as a base to build variants on.
- ``LOSSES``: ``factory(info: DatasetInfo, **options) -> nn.Module`` with
  ``forward(prediction, batch) -> scalar``. Checked by :func:`mtlbench.testing.check_loss`.
- ``WEIGHTINGS``: ``factory(tasks, **options) -> Weighting`` (:class:`LossWeighting`,
  :class:`GradientWeighting`, :class:`GramianWeighting`). Checked by
  :func:`mtlbench.testing.check_weighting`.
- ``MODELS``: ``factory(tasks, backbone: Backbone, **options) -> MultiTaskModel``, checked by
  :func:`mtlbench.testing.check_model`. A model with
  interactions registers ``interaction_points=InteractionPoints(...)``, declares the options
  ``interaction`` and ``guidance`` and takes ``interaction_options`` (the run's checked
  ``[model.interaction]``); :func:`task_graph` turns ``guidance`` into :class:`Edge` s. A
  registration's ``validate=fn(tasks, options)`` checks options against the trained tasks
  while the configuration is resolved, before anything is built.
- ``DATASETS``: ``factory(root, size, progress, **options) -> DatasetSplits``, three
  :class:`DenseDataset` splits of :class:`Arrays` (image, index and a dict of targets, each
  stored as ``DatasetInfo.targets`` declares it: a :class:`Target` of kind ``CONTINUOUS``,
  ``LABEL`` or ``VECTOR``). Checked by :func:`mtlbench.testing.check_dataset`.
- ``TASKS``: ``factory(info: DatasetInfo, **options) -> Task``: the target key it trains on, what
  it needs of a dataset (``missing``), targets it derives after augmentation (``derive``), the
  ground truth it is scored against (``score_target``), its head width, default loss, metrics,
  prediction, colours and saved files. A task's metric keys get labels, units and directions
  from :class:`MetricRecord` s added with :func:`register_metric`. Options go in
  ``[task_options.NAME]``.
- ``BACKBONES``: see ``docs/design.md``.

Importing this module is light (no torch); the classes that need torch load on first access.
"""

from __future__ import annotations

from typing import Any

from mtlbench.errors import MtlbenchError
from mtlbench.metrics.records import MetricRecord
from mtlbench.metrics.records import register as register_metric
from mtlbench.models.guidance import Edge, InteractionPoints, check_edges, graph_notes, task_graph
from mtlbench.options import Option, at_least, one_of, positive
from mtlbench.registry import (
    BACKBONES,
    DATASETS,
    INTERACTIONS,
    LOSSES,
    MODELS,
    REGISTRIES,
    TASKS,
    WEIGHTINGS,
    Registry,
    registry,
)

# 2.0: tasks own their targets (Target kinds, derive, score_target; task options); frames carry a
# dict of targets; dataset factories are (root, size, progress, **options), the depth range and
# edge settings no longer passed in; a dataset may carry a prepare step. 1.1: interaction points, task graphs.
API_VERSION = "2.0"
API_MAJOR = int(API_VERSION.split(".")[0])
SERVED = (1, 2)  # the majors whose plugins load: 1 for what did not change

# what a plugin declaring an older major must change, per registry whose contract changed
CHANGES = {1: {"datasets": "since API 2 a dataset factory takes (root, size, progress, **options), puts its "
                           "depth range in DatasetInfo.max_depth, and its Arrays carry a dict of targets "
                           "that DatasetInfo.targets declares"}}

# torch-backed names, imported on first access (PEP 562) so that `import mtlbench.api` stays light
_LAZY = {
    "MultiTaskModel": "mtlbench.models.base", "AUX": "mtlbench.models.base", "SHARED": "mtlbench.models.base",
    "Backbone": "mtlbench.models.backbones", "Task": "mtlbench.tasks", "DatasetInfo": "mtlbench.tasks",
    "Target": "mtlbench.tasks", "CONTINUOUS": "mtlbench.tasks", "LABEL": "mtlbench.tasks",
    "VECTOR": "mtlbench.tasks", "RGBD_TARGETS": "mtlbench.tasks.base", "NORMALS_TARGET": "mtlbench.tasks.base",
    "Metric": "mtlbench.metrics.base",
    "GuidedAttention": "mtlbench.models.interactions",
    "Weighting": "mtlbench.weighting.base", "LossWeighting": "mtlbench.weighting.base",
    "GradientWeighting": "mtlbench.weighting.base", "GramianWeighting": "mtlbench.weighting.base",
    "Arrays": "mtlbench.data.datasets", "DenseDataset": "mtlbench.data.datasets",
    "DatasetSplits": "mtlbench.data.datasets", "Preparer": "mtlbench.data.datasets",
    "PrepareResult": "mtlbench.data.datasets",
}

__all__ = ["API_MAJOR", "API_VERSION", "BACKBONES", "CHANGES", "DATASETS", "INTERACTIONS", "LOSSES", "MODELS",
           "REGISTRIES", "SERVED", "TASKS", "WEIGHTINGS", "Edge", "InteractionPoints", "MetricRecord", "MtlbenchError",
           "Option", "Registry", "at_least", "check_edges", "compatible", "graph_notes", "one_of", "positive",
           "register_metric",
           "registry", "task_graph", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtlbench.api' has no attribute {name!r}")


def compatible(declared: Any) -> str | None:
    """What is wrong with a plugin's ``MTLBENCH_API`` declaration for this host, or ``None``.

    The declaration is the API major version the plugin was written for ("1", 1 or "1.0").
    """
    text = str(declared).strip()
    major = text.split(".")[0]
    if not major.isdigit():
        return f"declares MTLBENCH_API = {declared!r}, which is not a version such as \"{API_MAJOR}\""
    if int(major) not in SERVED:
        return f"needs mtlbench API {int(major)}, and this mtlbench has API {API_VERSION}"
    return None


def declared_major(declared: object) -> int | None:
    """The major version of a served ``MTLBENCH_API`` declaration (``None`` for none)."""
    if declared is None:
        return None
    major = str(declared).strip().split(".")[0]
    return int(major) if major.isdigit() else None
