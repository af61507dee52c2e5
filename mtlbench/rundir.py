"""The run directory: one type that owns its file names (torch-free, so reports can use it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = ("best", "last")


@dataclass(frozen=True)
class RunDir:
    """A run directory::

        config.toml     the resolved configuration
        log.jsonl       one line per finished epoch (train losses, validation losses and metrics)
        last.pt         model, optimiser, weighting and bookkeeping after the last finished epoch
        best.pt         the model at the best validation score so far
        metrics.json    test (and validation) metrics of the best checkpoint, written at the end
        figures/        what ``mtlbench eval --figures`` draws
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def checkpoint(self, which: str) -> Path:
        """``best.pt`` or ``last.pt``."""
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint {which!r}: choose best or last")
        return self.path / f"{which}.pt"

    @property
    def best(self) -> Path:
        return self.checkpoint("best")

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``config.toml``)."""
        return self.config.is_file()

    def __str__(self) -> str:
        return str(self.path)
