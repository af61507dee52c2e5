"""Fixtures and helpers the tests share: tiny run settings, CLI invocation, the bad-input check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTLBENCH_SHARED", REPO.parent / "shared"))

# a run that trains in seconds on a CPU, as `mtlbench run` flags and as a config
TINY_ARGS = ["--backbone", "test_resnet", "--size", "64", "--frames", "24", "--epochs", "1",
             "--batch-size", "8", "--device", "cpu"]
TINY = {
    "data": {"size": 64, "scale": [0.7, 1.0], "options": {"frames": 40}},
    "model": {"backbone": "test_resnet", "width": 16},
    "train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
}


def tiny_config(**sections: dict[str, Any]):
    """:data:`TINY` as a RunConfig, with ``sections`` laid over it."""
    from mtlbench.config import RunConfig, from_dict

    cfg = from_dict(TINY, RunConfig())
    return from_dict(sections, cfg) if sections else cfg


def invoke(*args: Any):
    """Run the ``mtlbench`` CLI in-process; arguments are turned into strings."""
    from typer.testing import CliRunner

    from mtlbench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_bad_input(result, *fragments: str) -> None:
    """Exit code 2 and exactly one ``error:`` line on stderr containing every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # renders go to a per-session cache, never to the user's ~/.cache
    os.environ["MTLBENCH_CACHE"] = str(tmp_path_factory.mktemp("mtlbench-cache"))


@pytest.fixture()
def isolated_registries():
    """Registries and plugin state as they were, restored after the test."""
    from mtlbench import plugins, registry

    registry.ensure_populated()
    saved = {k: dict(r._entries) for k, r in registry.REGISTRIES.items()}
    saved_status = dict(plugins._status)
    yield registry
    for k, r in registry.REGISTRIES.items():
        r._entries.clear()
        r._entries.update(saved[k])
    plugins._status.clear()
    plugins._status.update(saved_status)


def shared_meta() -> Path:
    meta = SHARED / "nyuv2_ref" / "meta"
    if not meta.is_dir():
        pytest.skip(f"NYUv2 reference metadata not found at {meta} (only present in the project workspace)")
    return meta


# Tests on tiny models and small metric maps: one intra-op thread is fastest there, and on a busy
# machine each parallel op can stall for a scheduler slice.
SINGLE_THREAD_DIRS = ("metrics", "models")


@pytest.fixture(autouse=True, scope="module")
def _one_thread_for_small_tensors(request: pytest.FixtureRequest):
    if request.path.parent.name not in SINGLE_THREAD_DIRS:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
