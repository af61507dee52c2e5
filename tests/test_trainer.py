from __future__ import annotations

import json

import pytest
import torch

from mtlbench.config import load
from mtlbench.engine.build import build_run
from mtlbench.engine.checkpoints import load_checkpoint
from mtlbench.engine.feeding import batches
from mtlbench.engine.trainer import Trainer
from mtlbench.errors import NonFiniteLossError
from tests.conftest import tiny_config


class Interrupt(Exception):
    pass


class StopDuringEpoch:
    """A reporter that raises in the middle of the training part of one epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.target, self.epoch, self.step = (epoch, step), 0, 0

    def start(self, phase, epoch, epochs, steps):
        self.epoch, self.step, self.phase = epoch, 0, phase

    def advance(self, losses):
        self.step += 1
        if self.phase == "train" and (self.epoch, self.step) == self.target:
            raise Interrupt()

    def finish(self, record):
        pass

    def message(self, text):
        pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    result = Trainer(build_run(tiny_config()), run_dir).fit()
    return run_dir, result


@pytest.mark.slow
def test_run_directory_contents(uninterrupted):
    run_dir, result = uninterrupted
    assert {p.name for p in run_dir.iterdir()} == {"config.toml", "log.jsonl", "last.pt", "best.pt", "metrics.json"}
    expected = tiny_config(
        train={"select": "val/depth/loss"},
        data={"options": {"frames": 40, "protocol": "random", "fractions": [0.8, 0.1, 0.1], "split_seed": 0,
                          "scene_seed": 0, "holes": False, "max_depth": 10.0}},
        model={"options": {"interaction": "guided_attention", "guidance": ["seg->depth", "edge->depth"]},
               "interaction": {"dim": 64, "heads": 1, "grid": 16}},
        loss={"names": {"depth": "structured_depth", "seg": "cross_entropy", "edge": "balanced_bce"},
              "options": {"depth": {"alpha": 1.0, "beta": 1.0, "gamma": 0.1}, "seg": {}, "edge": {"pos_weight": 0.95}}},
        weighting={"name": "fixed", "options": {"weights": {}}},
        task_options={"edge": {"thickness": 1, "targets": "both_sides", "depth_edges": 0.0}})
    assert load(run_dir / "config.toml") == expected  # defaults spelled out
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]["depth"]) >= {"rmse", "abs_rel", "delta1", "mae_norm", "rmse_norm", "loss"}
    assert set(metrics["test"]["seg"]) >= {"miou", "pixel_acc"}
    assert set(metrics["test"]["edge"]) >= {"ods", "ois", "ap"}
    assert metrics["sizes"] == {"train": 32, "val": 4, "test": 4}
    # the best checkpoint is the epoch with the lowest validation depth loss
    best = min(log, key=lambda r: r["val"]["depth"]["loss"])
    assert metrics["best_epoch"] == best["epoch"]
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == best["epoch"]
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3


@pytest.mark.slow
def test_training_lowers_the_loss(uninterrupted):
    run_dir, _ = uninterrupted
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["train"]["total"] < log[0]["train"]["total"]


@pytest.mark.slow
def test_resume_after_an_interruption_reaches_identical_metrics(uninterrupted, tmp_path):
    _, expected = uninterrupted
    with pytest.raises(Interrupt):
        Trainer(build_run(tiny_config()), tmp_path, StopDuringEpoch(epoch=2, step=2)).fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not (tmp_path / "metrics.json").exists()
    result = Trainer(build_run(load(tmp_path / "config.toml")), tmp_path).fit(resume=True)
    assert result["test"] == expected["test"]
    assert result["best_epoch"] == expected["best_epoch"]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]


@pytest.mark.slow
def test_files_are_readable_by_others_as_the_umask_allows(uninterrupted):
    import os
    import stat

    run_dir, _ = uninterrupted
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.toml", "best.pt", "last.pt", "metrics.json"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.slow
def test_resume_skips_a_log_line_cut_short_by_a_crash(uninterrupted, tmp_path):
    import shutil

    run_dir, expected = uninterrupted
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").unlink()
    with (copy / "log.jsonl").open("a") as f:
        f.write('{"epoch": 4, "tra')
    result = Trainer(build_run(load(copy / "config.toml")), copy).fit(resume=True)
    assert result["test"] == expected["test"]
    assert [json.loads(line)["epoch"] for line in (copy / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.slow
def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    parts = build_run(tiny_config())
    real = parts.losses["depth"]
    calls = {"n": 0}

    class NaNOnSixthCall(torch.nn.Module):
        def forward(self, pred, batch):
            calls["n"] += 1
            loss = real(pred, batch)
            return loss * float("nan") if calls["n"] == 6 else loss

    parts.losses["depth"] = NaNOnSixthCall()
    trainer = Trainer(parts, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"loss of task depth became nan at epoch 2 step 1"):
        trainer.fit()
    # 4 training steps and 1 validation batch ran in epoch 1
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1
    assert not (tmp_path / "metrics.json").exists()


def test_batches_cover_the_split_once_in_a_seeded_order():
    parts = build_run(tiny_config())
    train = parts.splits.train
    seen = torch.cat([b["index"] for b in batches(train, 8, True, seed=5)])
    assert sorted(seen.tolist()) == sorted(train.arrays.index.tolist())
    again = torch.cat([b["index"] for b in batches(train, 8, True, seed=5)])
    other = torch.cat([b["index"] for b in batches(train, 8, True, seed=6)])
    assert torch.equal(seen, again) and not torch.equal(seen, other)


def test_deep_supervision_adds_one_term_per_scale():
    from mtlbench.engine.trainer import task_losses

    class Mean(torch.nn.Module):
        def forward(self, y, batch):
            return y.mean()

    out = {"depth": torch.full((1, 1, 4, 4), 1.0),
           "aux": [{"depth": torch.full((1, 1, 2, 2), 2.0)}, {"depth": torch.full((1, 1, 1, 1), 4.0)}]}
    losses = task_losses({"depth": Mean()}, out, {})
    # 1 (final) + 2 + 4 (two scales, upsampled to 4×4 keep their constant values)
    assert losses["depth"].item() == 7.0


@pytest.mark.slow
def test_a_gradient_level_weighting_trains_through_the_same_trainer(tmp_path):
    cfg = tiny_config(weighting={"name": "pcgrad"}, train={"epochs": 2})
    result = Trainer(build_run(cfg), tmp_path).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train"]["total"])) for r in log)
    assert load(tmp_path / "config.toml").weighting.name == "pcgrad"
    assert set(result["test"]) == {"depth", "seg", "edge", "total"}


@pytest.mark.slow
def test_nan_weights_stop_training_naming_the_method_task_and_step(tmp_path):
    from mtlbench.weighting import GramianWeighting

    class NaNOnSixthStep(GramianWeighting):
        calls = 0

        def weigh(self, gramian):
            NaNOnSixthStep.calls += 1
            w = torch.ones(len(self.tasks))
            if NaNOnSixthStep.calls == 6:
                w[1] = float("nan")
            return w

    parts = build_run(tiny_config(weighting={"name": "mgda"}))
    parts.weighting = NaNOnSixthStep(list(parts.tasks))
    # 4 training steps in epoch 1: the sixth is epoch 2's second
    with pytest.raises(NonFiniteLossError, match=r"weighting mgda gave task seg a weight of nan at epoch 2 step 2"):
        Trainer(parts, tmp_path).fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_dwa_through_the_trainer_logs_the_weights_its_paper_gives(tmp_path):
    Trainer(build_run(tiny_config(weighting={"name": "dwa", "options": {"temperature": 2.0}})), tmp_path).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    tasks = ["depth", "seg", "edge"]
    assert [list(r["weights"]) for r in log] == [tasks] * 3
    assert log[0]["weights"] == log[1]["weights"] == dict.fromkeys(tasks, 1.0)
    # epoch 3: T·softmax(r/2) with r the ratio of the logged mean training losses of epochs 2 and 1
    rates = torch.tensor([log[1]["train"][t] / log[0]["train"][t] for t in tasks], dtype=torch.float64)
    expected = 3 * torch.softmax(rates / 2.0, dim=0)
    assert [log[2]["weights"][t] for t in tasks] == pytest.approx(expected.tolist(), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["famo", "gradvac"])
def test_a_stateful_weighting_resumes_to_identical_metrics(name, tmp_path):
    cfg = tiny_config(weighting={"name": name})
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    expected = Trainer(build_run(cfg), tmp_path / "full").fit()
    with pytest.raises(Interrupt):
        Trainer(build_run(cfg), tmp_path / "cut", StopDuringEpoch(epoch=2, step=2)).fit()
    result = Trainer(build_run(load(tmp_path / "cut" / "config.toml")), tmp_path / "cut").fit(resume=True)
    assert result["test"] == expected["test"]
    logs = [[json.loads(line)["weights"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("full", "cut")]
    assert logs[0] == logs[1]
