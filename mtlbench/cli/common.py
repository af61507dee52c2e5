"""What every command shares: the Typer apps, consoles, and one line per error (exit 2).

A library error names the configuration key a value came from (``train.compile``); where the
value came from a flag, :func:`one_line_errors` adds the flag after the key
(``train.compile (--compile)``), so a message reads right for TOML, sweeps and Python alike.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from mtlbench.errors import MtlbenchError, NonFiniteLossError

app = typer.Typer(help="Train and compare multi-task dense-prediction models (depth, segmentation, edges).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

data_app = typer.Typer(help="Prepare datasets: read the originals once, write a fast cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

plugin_app = typer.Typer(help="Write plugins: a new distribution from a template.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _debug() -> bool:
    return os.environ.get("MTLBENCH_DEBUG", "") not in ("", "0")


def with_flags(message: str, flags: Mapping[str, str], words: Mapping[str, str] | None = None) -> str:
    """``message`` with each dotted configuration key a flag set followed by that flag, once (an
    undotted key such as ``tasks`` reads as a plain word in messages, so it is left alone), and
    each of ``words`` (an action the message names, "resume") followed by the flag that does it."""
    for key, flag in [*((k, f) for k, f in flags.items() if "." in k), *(words or {}).items()]:
        if flag in message:
            continue
        message = re.sub(rf"(?<![\w.-]){re.escape(key)}(?![\w-]|\.\w)", rf"\g<0> ({flag})", message, count=1)
    return message


@contextmanager
def one_line_errors(flags: Mapping[str, str] | None = None, words: Mapping[str, str] | None = None
                    ) -> Iterator[None]:
    """Bad input becomes one line on stderr and exit code 2 (``MTLBENCH_DEBUG=1``: the traceback);
    a loss that stopped being finite exits 1. ``flags`` and ``words`` as :func:`with_flags` takes them."""
    try:
        yield
    except NonFiniteLossError as exc:
        fail(with_flags(str(exc), flags or {}, words), EXIT_FAILED)
    except MtlbenchError as exc:
        if _debug():
            raise
        fail(with_flags(str(exc), flags or {}, words))


def one_line_warnings() -> None:
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"


def _typed(ctx: typer.Context, param: str) -> bool:
    """Whether ``param`` was given on the command line (not a default or the environment)."""
    return getattr(ctx.get_parameter_source(param), "name", None) == "COMMANDLINE"


def flag_name(param: str) -> str:
    return "--" + param.rstrip("_").replace("_", "-")


def given(ctx: typer.Context, keys: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of the flags given on the command line: (configuration key → value,
    configuration key → flag). ``keys``: parameter name → the configuration key it sets."""
    settings: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for param, key in keys.items():
        if _typed(ctx, param):
            settings[key] = ctx.params[param]
            flags[key] = flag_name(param)
    return settings, flags


def typed_on_command_line(ctx: typer.Context) -> list[str]:
    """The flags given on the command line, sorted."""
    return sorted(flag_name(p) for p in ctx.params if _typed(ctx, p))
