"""Errors the user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class MtlbenchError(Exception):
    """A problem with the user's input (names, paths, sizes, run directories)."""


class UnknownNameError(MtlbenchError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NonFiniteLossError(MtlbenchError):
    """A loss became NaN or Inf during training."""


class BadPredictionError(MtlbenchError, ValueError):
    """A metric met predictions it cannot score (a label outside the classes, a non-finite value)."""
