"""One small generic registry and the registries of mtlbench.

Entries are plain factory functions (or classes) registered with a decorator::

    from mtlbench.registry import MODELS

    @MODELS.register("my_model", tasks=("depth", "seg"))
    def my_model(tasks, backbone, **kwargs) -> nn.Module: ...

Lookups populate the registries on first use: the built-in modules are imported, then the
``mtlbench.plugins`` entry points are loaded (see :mod:`mtlbench.plugins`). Importing this
module is cheap: it imports neither torch nor any plugin.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from mtlbench.errors import MtlbenchError, UnknownNameError

T = TypeVar("T")

BUILTIN = "built-in"

# Set by the plugin loader while a plugin runs, so that its registrations name it.
_current_source: ContextVar[str] = ContextVar("mtlbench_registry_source", default=BUILTIN)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from."""

    name: str
    obj: T
    source: str
    summary: str
    meta: Mapping[str, Any] = field(default_factory=dict)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class Registry(Generic[T]):
    """A name → object table with did-you-mean lookups.

    Args:
        kind: what the registry holds, in the plural ("models"); used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``).

        Extra keyword arguments are kept as metadata (for example the tasks a model serves).

        Raises:
            MtlbenchError: the name is already registered.
        """

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__, obj, **meta)  # type: ignore[attr-defined]
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Register ``obj`` under ``name``; see :meth:`register`."""
        if not name or not isinstance(name, str):
            raise MtlbenchError(f"{self.kind}: a registered name must be a non-empty string, got {name!r}")
        if name in self._entries:
            old = self._entries[name]
            raise MtlbenchError(
                f"{self.kind}: {name!r} is already registered (by {old.source}); choose another name"
            )
        self._entries[name] = Entry(name, obj, _current_source.get(), _first_doc_line(obj),
                                    MappingProxyType(dict(meta)))

    def discard_source(self, source: str) -> None:
        """Unregister every entry that ``source`` registered."""
        for name in [n for n, e in self._entries.items() if e.source == source]:
            del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``.

        Raises:
            UnknownNameError: with the closest registered names.
        """
        ensure_populated()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name``."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        ensure_populated()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[Entry[T]]:
        ensure_populated()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        ensure_populated()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        ensure_populated()
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        singular = self.kind[:-1] if self.kind.endswith("s") else self.kind
        return f"unknown {singular} {name!r}: {hint}known {self.kind}: {known}"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


TASKS: Registry[Any] = Registry("tasks")
BACKBONES: Registry[Any] = Registry("backbones")
INTERACTIONS: Registry[Any] = Registry("interactions")
LOSSES: Registry[Any] = Registry("losses")
WEIGHTINGS: Registry[Any] = Registry("weightings")
DATASETS: Registry[Any] = Registry("datasets")
MODELS: Registry[Any] = Registry("models")

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (TASKS, BACKBONES, INTERACTIONS, LOSSES, WEIGHTINGS, DATASETS, MODELS)
}

# Imported on first lookup; each registers its entries at import time.
_BUILTIN_MODULES = (
    "mtlbench.tasks",
    "mtlbench.models.backbones",
    "mtlbench.models.interactions",
    "mtlbench.models.multitask",
    "mtlbench.models.mtinet_eccv20",
    "mtlbench.models.zoo",
    "mtlbench.models.smp_baselines",
    "mtlbench.losses",
    "mtlbench.losses.weighting",
    "mtlbench.data.datasets",
    "mtlbench.data.nyuv2",
)

_populated = False
_populating = False


def ensure_populated() -> None:
    """Import the built-in entries, then load the plugins, once per process."""
    global _populated, _populating
    if _populated or _populating:
        return
    _populating = True
    try:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        from mtlbench.plugins import load_plugins

        load_plugins()
        _populated = True
    finally:
        _populating = False


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` ("models", "tasks", …), with did-you-mean on a wrong kind."""
    if kind in REGISTRIES:
        return REGISTRIES[kind]
    close = difflib.get_close_matches(kind, list(REGISTRIES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownNameError(f"unknown registry {kind!r}: {hint}choose from {', '.join(REGISTRIES)}")
