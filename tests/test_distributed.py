"""Several processes: the reductions, the batch shares, CPU sync-BN, and real 2-process runs on gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import assert_bad_input, invoke

# two processes on gloo train the tiny model; --batch-size 8 is the global batch (4 per process)
TINY_DDP = ["--backbone", "test_resnet", "--size", "64", "--frames", "40", "--batch-size", "8", "--device", "cpu"]


def _mtlbench(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "mtlbench", "run", *args], capture_output=True, text=True,
                            env=env, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _assert_close(a: dict, b: dict, rel: float) -> None:
    for split in ("val", "test"):
        for task, values in a[split].items():
            for k, v in values.items():
                w = b[split][task][k]
                # SILog is a difference of two nearly equal means: it amplifies the last digits of
                # the predictions (on top of its float32 per-image sums) about a hundredfold; the
                # thresholded ones (depth boundaries, edge matches, δ) flip a pixel or two
                thresholded = task == "edge" or k.startswith(("dbe", "delta")) and k != "loss"
                r = rel * 100 if k.startswith("silog") or thresholded else rel
                assert abs(v - w) <= r * max(abs(v), abs(w), 1e-3), (split, task, k, v, w)


# -- pieces --------------------------------------------------------------------------------


def test_rank_shares_of_each_batch_make_up_the_whole_batch() -> None:
    from mtlbench.engine.build import build_run
    from mtlbench.engine.feeding import batches
    from tests.conftest import tiny_config

    train = build_run(tiny_config()).dataset_splits().train
    whole = [b["index"] for b in batches(train, 8, True, 3, True)]
    shares = [[b["index"] for b in batches(train, 8, True, 3, True, (r, 2))] for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for w, a, b in zip(whole, *shares):
        assert torch.equal(torch.cat([a, b]), w)


class _Pair:
    """A group of two processes as one process sees it: the other's state is ``other``'s."""

    active = True

    def __init__(self, other, names: tuple[str, ...] = ()) -> None:
        self.other = [getattr(other, n) for n in names]
        self.counts = other._all() if hasattr(other, "_all") else None

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t + self.other.pop(0)

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, self.counts])


@pytest.mark.parametrize("task", ["depth", "seg", "edge"])
def test_metrics_reduced_over_two_processes_equal_one_process_over_both_halves(task: str) -> None:
    from mtlbench.tasks import DatasetInfo, build_tasks, parse_tasks

    info = DatasetInfo(5, 10.0, ("a", "b", "c", "d", "e"), 255)
    t = build_tasks(parse_tasks([task]), info)[task]
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(4, 1, 32, 32, generator=g) * 9 + 0.5
    depth[0, 0, :4] = 0  # invalid pixels
    batch = {"depth": depth, "seg": torch.randint(0, 5, (4, 32, 32), generator=g),
             "edge": (torch.rand(4, 1, 32, 32, generator=g) > 0.8).float()}
    if task == "depth":
        pred = depth * (1 + 0.2 * torch.rand(4, 1, 32, 32, generator=g))
    elif task == "seg":
        pred = torch.randint(0, 5, (4, 32, 32), generator=g)
    else:
        pred = torch.rand(4, 1, 32, 32, generator=g)
    whole, first, second = (t.metrics() for _ in range(3))
    whole.update(pred, batch)
    first.update(pred[:2], {k: v[:2] for k, v in batch.items()})
    second.update(pred[2:], {k: v[2:] for k, v in batch.items()})
    first.reduce(_Pair(second, first.summed), torch.device("cpu"))
    expected, got = whole.compute(), first.compute()
    assert expected.keys() == got.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12), k


class _Alone:
    """Reductions of a group of one that still takes the group's code path."""

    active = True

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t


def test_global_batch_norm_matches_batch_norm_and_its_gradients() -> None:
    from mtlbench.engine.distributed import _GlobalBatchNorm

    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64)
    y, mean, var, n = _GlobalBatchNorm.apply(x, w, b, 1e-5, _Alone())
    grads = torch.autograd.grad(y, (x, w, b), dy)
    ref = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dy)
    assert torch.allclose(y, ref, atol=1e-12)
    assert torch.allclose(mean, x.mean((0, 2, 3)), atol=1e-12)
    assert torch.allclose(var, x.var((0, 2, 3), unbiased=False), atol=1e-12)
    assert int(n) == 4 * 5 * 6
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-10)


def test_restoring_a_checkpoint_of_another_world_size_is_refused(tmp_path: Path) -> None:
    from mtlbench.engine.build import build_run
    from mtlbench.engine.trainer import Trainer
    from mtlbench.errors import MtlbenchError
    from tests.conftest import tiny_config

    trainer = Trainer(build_run(tiny_config()), tmp_path)
    state = trainer.state()
    state["world"] = 2
    with pytest.raises(MtlbenchError, match=r"trained in 2 process.*resume in 2 process\(es\)"):
        trainer.restore(state)


@pytest.mark.parametrize("args, fragments", [
    (["--nproc", "64"], ["nproc 64 is more than the", "CPU core"]),
    (["--nproc", "0"], ["nproc must be at least 1"]),
    (["--precision", "fp16"], ["fp16 needs a GPU"]),
    (["--precision", "fp8"], ["train.precision", "'fp8' is not one of auto, fp32, bf16, fp16"]),
    (["--compile", "sometimes"], ["train.compile", "'sometimes' is not one of off, on, auto"]),
    (["--bf16", "--precision", "fp32"], ["--bf16 and --precision fp32 contradict"]),
])
def test_bad_launch_and_speed_settings_are_one_line_and_write_nothing(tmp_path: Path, args: list[str],
                                                                      fragments: list[str]) -> None:
    run_dir = tmp_path / "run"
    assert_bad_input(invoke("run", *TINY_DDP, "--epochs", "1", "--run-dir", run_dir, *args), *fragments)
    assert not run_dir.exists()


def test_compile_where_the_compiler_cannot_run_is_refused_or_eager_with_auto(tmp_path: Path, monkeypatch) -> None:
    from mtlbench.engine import build

    monkeypatch.setattr(build, "compile_blocker", lambda device: "no compiler here")
    run_dir = tmp_path / "run"
    assert_bad_input(invoke("run", *TINY_DDP, "--epochs", "1", "--run-dir", run_dir, "--compile", "on"),
                     "train.compile", "torch.compile cannot run on cpu: no compiler here", "set it to auto")
    assert not run_dir.exists()
    result = invoke("run", *TINY_DDP, "--epochs", "1", "--run-dir", run_dir, "--compile", "auto")
    assert result.exit_code == 0, result.output
    assert "train.compile" in result.stderr and "auto: training eager" in result.stderr
    assert 'compile = "auto"' in (run_dir / "config.toml").read_text()


def test_a_bare_compile_flag_means_on() -> None:
    from mtlbench.cli import bare_flags

    assert bare_flags(["run", "--compile"]) == ["run", "--compile=on"]
    assert bare_flags(["run", "--compile", "--epochs", "1"]) == ["run", "--compile=on", "--epochs", "1"]
    assert bare_flags(["run", "--compile", "auto"]) == ["run", "--compile", "auto"]


# -- two processes on gloo -----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "two"
    _mtlbench(*TINY_DDP, "--epochs", "3", "--nproc", "2", "--sync-bn", "--run-dir", str(run))
    return run


@pytest.mark.slow
def test_two_processes_with_sync_bn_reach_the_metrics_of_one_process(two_process_run: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _mtlbench(*TINY_DDP, "--epochs", "3", "--run-dir", str(one))
    a, b = _metrics(one), _metrics(two_process_run)
    assert b["processes"] == 2 and a["processes"] == 1
    # the same batches, augmentation and BatchNorm statistics; only the order of float sums
    # differs (two half-batch means averaged, statistics all-reduced), about 1e-6 relative
    _assert_close(a, b, rel=1e-4)
    log_a = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (two_process_run / "log.jsonl").read_text().splitlines()]
    # a process's loss is the mean over its half's valid pixels, so where the halves hold
    # different numbers of valid depth pixels the two means weigh them slightly unlike one mean
    for ra, rb in zip(log_a, log_b):
        for k, v in ra["train"].items():
            assert rb["train"][k] == pytest.approx(v, rel=1e-3)
    assert all(r["world"] == 2 for r in log_b)


@pytest.mark.slow
def test_two_processes_killed_and_resumed_reach_the_uninterrupted_metrics(two_process_run: Path,
                                                                          tmp_path: Path) -> None:
    run = tmp_path / "killed"
    args = [*TINY_DDP, "--epochs", "3", "--nproc", "2", "--sync-bn", "--run-dir", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "mtlbench", "run", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "last.pt").is_file():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-epoch 2
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (run / "metrics.json").exists()
    resumed = _mtlbench("--run-dir", str(run), "--resume", "--nproc", "2")
    assert "resuming after epoch" in resumed.stderr
    _assert_close(_metrics(two_process_run), _metrics(run), rel=1e-6)


@pytest.mark.slow
def test_resuming_in_another_number_of_processes_is_refused(two_process_run: Path) -> None:
    result = invoke("run", "--run-dir", two_process_run, "--resume")
    assert_bad_input(result, "trained in 2 process(es)", "resume in 2 process(es)")


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_job_instead_of_hanging_it(tmp_path: Path) -> None:
    run = tmp_path / "dies"
    args = [*TINY_DDP, "--epochs", "50", "--nproc", "2", "--run-dir", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "mtlbench", "run", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (run / "last.pt").is_file():
            time.sleep(0.05)
        rank1 = [pid for pid in _descendants(proc.pid) if _environ(pid).get("RANK") == "1"]
        assert rank1, "no rank 1 process found"
        os.kill(rank1[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # torchrun's agent ends rank 0 too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "SIGKILL" in err or "Signal 9" in err or "exitcode" in err, err[-2000:]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.mark.slow
def test_a_gradient_level_weighting_in_two_processes_matches_one_process(tmp_path: Path) -> None:
    # PCGrad combines the per-task gradients of the whole global batch: the Jacobian is averaged
    # over the processes before the projections, which then amplify float-order differences a
    # little more than a plain sum does
    args = [*TINY_DDP, "--epochs", "2", "--weighting", "pcgrad"]
    _mtlbench(*args, "--run-dir", str(tmp_path / "one"))
    _mtlbench(*args, "--nproc", "2", "--sync-bn", "--run-dir", str(tmp_path / "two"))
    _assert_close(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"), rel=1e-3)
