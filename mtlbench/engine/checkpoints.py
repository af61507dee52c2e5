"""A run's checkpoint and log files: ``best.pt``/``last.pt`` written and read back, and the
epochs of ``log.jsonl``.

Separate from :mod:`mtlbench.engine.trainer` because more than training reads them: re-evaluation
(:mod:`mtlbench.engine.runs`), the ablation runner's check that a run can resume, and the CLI's
check that a run resumes in as many processes as it trained in need the files, not a trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

CHECKPOINT_FORMAT = 1


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise MtlbenchError(f"checkpoint {path} not found") from None
    except Exception as exc:
        raise MtlbenchError(f"checkpoint {path} cannot be read ({type(exc).__name__}); "
                            f"it may be from another mtlbench version or corrupt") from None


def world_size_error(saved: int, now: int) -> str:
    return (f"this run trained in {saved} process(es) and would resume in {now}, which changes its batches' "
            f"BatchNorm statistics and per-process loss means: resume in {saved} process(es)")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's epochs; a line cut short by a crash is skipped."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
