"""The ``mtlbench`` command line. Each command parses, builds a configuration and calls the
library; one module per group of commands.

Heavy modules (torch, timm, kornia, plugins) are imported inside commands, never at start-up,
so ``mtlbench --help`` stays fast; so are the light ones that ``--help`` does not load anyway.
At module level only what ``import mtlbench`` (errors, registry) and typer's help (rich) load.
"""

from __future__ import annotations

import sys

from mtlbench.cli.common import app

# each registers its commands on the app, in the order `--help` lists them
# isort: off
from mtlbench.cli import tools, train, results, ablate  # noqa: F401
# isort: on

__all__ = ["app", "bare_flags", "main"]


def bare_flags(argv: list[str]) -> list[str]:
    """A bare ``--compile`` (no on/off/auto after it) reads as ``--compile=on``: click has no
    option whose value may be left out."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--compile" and (i + 1 == len(out) or out[i + 1] not in ("on", "off", "auto")):
            out[i] = "--compile=on"
    return out


def main() -> None:
    """Console-script entry point."""
    sys.argv[1:] = bare_flags(sys.argv[1:])
    app()
