"""``mtlbench plugin new NAME``: a plugin distribution that installs with ``pip install -e`` and
trains at once, with a README and tests that use the contract kit (:mod:`mtlbench.testing`).

The templates use :mod:`mtlbench.api` only and declare the API version they were written for.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

KINDS = ("interaction", "loss", "weighting", "model", "dataset", "task")

def _module(kind: str, name: str, cls: str) -> str:
    """The template of ``kind`` (a real module under ``resources/templates/``, written with the
    name ``my_plugin`` and the class ``MyPlugin``) for a plugin named ``name``."""
    text = resources.files("mtlbench.resources").joinpath(f"templates/{kind}.py").read_text()
    return text.replace("MyPlugin", cls).replace("my_plugin", name)


_TESTS = {
    "interaction": ("check_interaction", '"{name}"'),
    "loss": ("check_loss", '"{name}"'),  # for the task its registration names
    "weighting": ("check_weighting", '"{name}"'),
    "model": ("check_model", '"{name}"'),
    "dataset": ("check_dataset", '"{name}", frames=12'),  # a dozen frames keep it fast
    "task": ("check_task", '"{name}"'),
}

_RUN = {"interaction": "--task depth,seg,edge --interaction {name}",
        "loss": "--task depth --config CONFIG  # a config.toml with [loss.names] depth = \"{name}\"",
        "weighting": "--task depth,seg,edge --weighting {name}", "model": "--task depth,seg,edge --model {name}",
        "dataset": "--task depth,seg,edge --data {name}", "task": "--task depth,{name}"}


def registry_kind(kind: str) -> str:
    """The registry a plugin kind registers into, as ``mtlbench list`` names it."""
    return "losses" if kind == "loss" else f"{kind}s"  # task → tasks


def plugin_files(name: str, kind: str) -> dict[str, str]:
    """Relative path → text of a new plugin distribution named ``name``."""
    if kind not in KINDS:
        raise MtlbenchError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise MtlbenchError(f"plugin name {name!r}: use lower-case letters, digits and _, starting with a letter "
                            f"(it becomes the registered name and part of the package name)")
    pkg = f"mtlbench_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) or "Plugin"
    dist = f"mtlbench-{name.replace('_', '-')}"
    run = _RUN[kind].format(name=name)
    check, args = _TESTS[kind][0], _TESTS[kind][1].format(name=name)
    listed = registry_kind(kind)
    return {
        "pyproject.toml": f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "mtlbench plugin: the {kind} {name}"
requires-python = ">=3.10"
dependencies = ["mtlbench"]

[project.entry-points."mtlbench.plugins"]
{name} = "{pkg}:register"

[tool.setuptools.packages.find]
where = ["src"]
''',
        f"src/{pkg}/__init__.py": _module(kind, name, cls),
        f"tests/test_{pkg}.py": f'''"""The {kind} {name} keeps mtlbench's contract."""

import pytest

pytest.importorskip("{pkg}", reason="the plugin is not installed: pip install -e .")


def test_{name}_keeps_the_{kind}_contract():
    from mtlbench.testing import {check}

    {check}({args})
''',
        "README.md": f'''# {dist}

An mtlbench plugin: the {kind} `{name}` (written by `mtlbench plugin new {name} --kind {kind}`).

```bash
pip install -e .
mtlbench list {listed:<22} # {name}, source "plugin {name} ({dist})"
mtlbench run {run} --preset quick
python -m pytest -q tests
```

It imports from `mtlbench.api` only and declares `MTLBENCH_API = "2"`, the API version it was
written for; see mtlbench's `docs/plugins.md`.
''',
    }


def new_plugin(name: str, kind: str, folder: Path) -> list[Path]:
    """Write a plugin distribution into ``folder`` (new or empty); returns the files written."""
    files = plugin_files(name, kind)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MtlbenchError(f"{folder} exists and is not an empty folder: choose another folder")
    written = []
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, text)
        written.append(path)
    return written


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")
