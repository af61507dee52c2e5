from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTLBENCH_SHARED", REPO.parent / "shared"))


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
