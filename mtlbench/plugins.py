"""Entry-point plugins.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."mtlbench.plugins"]
    my_plugin = "my_package.mtlbench_plugin"            # a module: importing it registers
    other = "my_package.plugin:register"                 # or a function called with no arguments

Discovery reads installed metadata only when a registry is first used (never at
``import mtlbench`` or for ``--help``). Each plugin loads inside its own guard: a broken one
becomes a single warning naming it, and the rest keep working. ``MTLBENCH_DISABLE_PLUGINS=1``
turns discovery off.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mtlbench.registry import REGISTRIES, registering_as

GROUP = "mtlbench.plugins"
DISABLE_ENV = "MTLBENCH_DISABLE_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin failed to load; mtlbench goes on without it."""


class IncompatiblePlugin(Exception):
    """A plugin written for another major version of :mod:`mtlbench.api`."""


def _drop_changed(module_name: str, source: str) -> None:
    """Entries a plugin declaring an older API registered where that contract changed: dropped,
    with one warning saying what to change."""
    import sys

    from mtlbench.api import API_MAJOR, CHANGES, declared_major

    major = declared_major(getattr(sys.modules.get(module_name), "MTLBENCH_API", None))
    if major is None or major == API_MAJOR:
        return
    for kind, change in CHANGES.get(major, {}).items():
        registry = REGISTRIES[kind]
        names = [e.name for e in registry.entries() if e.source == source]
        if names:
            registry.discard_source(source)
            warnings.warn(f"{source} declares MTLBENCH_API = \"{major}\": its {kind} {', '.join(names)} are skipped; "
                          f"{change}: update them and declare MTLBENCH_API = \"{API_MAJOR}\"",
                          PluginWarning, stacklevel=3)


def api_problem(module_name: str) -> str | None:
    """What is wrong with the ``MTLBENCH_API`` that a plugin's module declares (``None``: it
    declares none, or one this host serves)."""
    import sys

    from mtlbench.api import compatible

    module = sys.modules.get(module_name)
    declared = getattr(module, "MTLBENCH_API", None)
    return None if declared is None else compatible(declared)


@dataclass(frozen=True)
class PluginStatus:
    name: str
    value: str
    distribution: str
    error: str | None = None

    @property
    def source(self) -> str:
        return f"plugin {self.name} ({self.distribution})"


_status: dict[str, PluginStatus] = {}


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def discover() -> list[EntryPoint]:
    """The entry points of the ``mtlbench.plugins`` group, sorted by name, without loading them."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def load_plugins() -> dict[str, PluginStatus]:
    """Load every plugin not yet loaded; returns the status of each, keyed "distribution:name"."""
    if plugins_disabled():
        return dict(_status)
    for ep in discover():
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        key = f"{dist}:{ep.name}"
        if key in _status:
            continue
        status = PluginStatus(ep.name, ep.value, dist)
        try:
            with registering_as(status.source):
                obj = ep.load()
                problem = api_problem(ep.module)
                if problem:
                    raise IncompatiblePlugin(problem)
                if ep.attr and callable(obj):
                    obj()
                _drop_changed(ep.module, status.source)
        except Exception as exc:  # a plugin must never take the host down
            status = PluginStatus(ep.name, ep.value, dist, f"{type(exc).__name__}: {exc}")
            for reg in REGISTRIES.values():  # a half-loaded plugin leaves nothing behind
                reg.discard_source(status.source)
            what = (f"is skipped: it {exc}; install a release of {dist} written for this API"
                    if isinstance(exc, IncompatiblePlugin) else f"failed to load and is skipped: {status.error}")
            warnings.warn(f"mtlbench plugin {ep.name!r} from {dist} {what}", PluginWarning, stacklevel=2)
        _status[key] = status
    return dict(_status)


def plugin_status() -> dict[str, PluginStatus]:
    """What :func:`load_plugins` has seen: loaded plugins and failures."""
    return dict(_status)


# Each registers its entries when imported.
BUILTIN_MODULES = (
    "mtlbench.tasks",
    "mtlbench.models.backbones",
    "mtlbench.models.interactions",
    "mtlbench.models.multitask",
    "mtlbench.models.mtinet_eccv20",
    "mtlbench.models.zoo",
    "mtlbench.models.beneath_systems",
    "mtlbench.models.smp_baselines",
    "mtlbench.losses",
    "mtlbench.weighting",
    "mtlbench.data.synthrooms.dataset",
    "mtlbench.data.nyuv2",
    "mtlbench.data.nyud_mt",
)


def populate() -> None:
    """Import the built-in entries, then load the plugins (the registries' first-lookup hook)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins()
