"""One small generic registry and the registries of mtlbench.

Entries are plain factory functions (or classes) registered with a decorator::

    from mtlbench.registry import MODELS

    @MODELS.register("my_model", tasks=("depth", "seg"))
    def my_model(tasks, backbone, **kwargs) -> nn.Module: ...

A factory declares the options it takes (``options={"dim": 64}``: names and defaults, or
:class:`~mtlbench.options.Option` for help and value checks); the configuration's option tables
are validated against them before anything is built (:func:`mtlbench.options.resolve_options`).

This module is a leaf: it knows nothing of what fills it. Lookups run the populators installed
with :func:`on_first_lookup` once (the package installs one that imports the built-in modules
and loads the entry-point plugins, see :mod:`mtlbench.plugins`). Code that registers on behalf
of someone else (the plugin loader) names them with :func:`registering_as`. Importing this module
is cheap: it imports neither torch nor any plugin.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from mtlbench.errors import MtlbenchError, UnknownNameError
from mtlbench.options import Option, declare_options, resolve_options

T = TypeVar("T", bound=Callable[..., Any])  # what registries hold: factories (functions or classes)

BUILTIN = "built-in"

# Set by registering_as while a plugin runs, so that its registrations name it.
_current_source: ContextVar[str] = ContextVar("mtlbench_registry_source", default=BUILTIN)


@contextmanager
def registering_as(source: str) -> Iterator[None]:
    """Entries registered inside are attributed to ``source`` (e.g. "plugin x (dist)")."""
    token = _current_source.set(source)
    try:
        yield
    finally:
        _current_source.reset(token)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from."""

    name: str
    obj: T
    source: str
    summary: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Option] = field(default_factory=dict)  # declared options, in order


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

    def register(self, name: str | None = None, *, options: Mapping[str, Any] | None = None,
                 **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``).

        Args:
            options: the options the factory takes from the configuration, name → default (or
                an :class:`~mtlbench.options.Option`); the factory is called with all of them.
            meta: kept as metadata (for example the tasks a model serves).

        Raises:
            MtlbenchError: the name is already registered.
        """

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__, obj, options=options, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, options: Mapping[str, Any] | None = None, **meta: Any) -> None:
        """Register ``obj`` under ``name``; see :meth:`register`."""
        if not name or not isinstance(name, str):
            raise MtlbenchError(f"{self.kind}: a registered name must be a non-empty string, got {name!r}")
        if name in self._entries:
            old = self._entries[name]
            raise MtlbenchError(
                f"{self.kind}: {name!r} is already registered (by {old.source}); choose another name"
            )
        self._entries[name] = Entry(name, obj, _current_source.get(), _first_doc_line(obj),
                                    MappingProxyType(dict(meta)), declare_options(options or {}))

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
        """Call the factory registered under ``name``. Where it declares options, ``kwargs`` are
        checked against them and completed with their defaults; otherwise passed as they are. A
        model registered with ``interaction_points`` also takes ``interaction_options`` (its
        interaction's options, ``[model.interaction]``), passed through as given."""
        entry = self.entry(name)
        extra = {}
        if entry.meta.get("interaction_points") and "interaction_options" in kwargs:
            extra["interaction_options"] = kwargs.pop("interaction_options")
        if entry.options:
            kwargs = resolve_options(f"{self._singular} {name}", entry.options, kwargs, "options")
        return entry.obj(*args, **kwargs, **extra)

    @property
    def _singular(self) -> str:
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

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
        return f"unknown {self._singular} {name!r}: {hint}known {self.kind}: {known}"

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

_populators: list[Callable[[], None]] = []
_populated = False
_populating = False


def on_first_lookup(populate: Callable[[], None]) -> None:
    """Run ``populate`` before the first lookup of any registry (once per process)."""
    if populate not in _populators:
        _populators.append(populate)


def ensure_populated() -> None:
    """Run the populators once (a lookup made while they run sees what is registered so far)."""
    global _populated, _populating
    if _populated or _populating:
        return
    _populating = True
    try:
        for populate in list(_populators):
            populate()
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
