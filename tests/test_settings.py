"""A choice is a name with its options: flags, config files and ``--set`` meet under one rule
(mtlbench.settings), ``resolve`` refuses what ``run`` would before anything runs, and one
training workflow serves ``run`` and ``ablate``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from mtlbench import config as C
from mtlbench.errors import MtlbenchError
from tests.conftest import TINY_ARGS, assert_bad_input, invoke


def write(folder: Path, text: str, name: str = "c.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def trained_config(run: Path) -> C.RunConfig:
    return C.load(run / "config.toml")


@pytest.mark.slow
def test_interaction_options_of_a_file_that_names_none_apply_to_the_flags_choice(tmp_path):
    config = write(tmp_path, 'preset = "quick"\n[model.interaction]\nheads = 2\n')
    run = tmp_path / "run"
    result = invoke("run", "--task", "depth,seg", "--interaction", "gated_attention", "--config", config,
                    *TINY_ARGS, "--run-dir", run)
    assert result.exit_code == 0, result.output
    assert trained_config(run).model.interaction == {"dim": 64, "heads": 2, "grid": 16}


def test_a_misspelt_option_in_the_file_is_exit_2_with_the_close_match(tmp_path):
    config = write(tmp_path, 'preset = "quick"\n[model.interaction]\nhaeds = 2\n')
    result = invoke("run", "--task", "depth,seg", "--interaction", "gated_attention", "--config", config,
                    *TINY_ARGS, "--run-dir", tmp_path / "run")
    assert_bad_input(result, "interaction gated_attention takes no option 'haeds'", "did you mean 'heads'")
    assert not (tmp_path / "run").exists()


def test_weighting_options_follow_the_flags_weighting_and_are_checked_against_it(tmp_path):
    config = write(tmp_path, 'preset = "quick"\n[weighting.options]\nweights = { depth = 2.0 }\n')
    bad = invoke("run", "--task", "depth,seg", "--weighting", "uncertainty", "--config", config, *TINY_ARGS,
                 "--run-dir", tmp_path / "bad")
    assert_bad_input(bad, "weighting uncertainty takes no option 'weights'")
    from mtlbench.workflows.configure import configure

    cfg = configure(None, config, {"tasks": "depth,seg", "weighting.name": "fixed"})
    assert cfg.weighting.options["weights"]["depth"] == 2.0  # the file's options, for the file's default


def test_a_file_naming_another_choice_has_its_options_dropped_with_one_line(tmp_path):
    from mtlbench.workflows.configure import configure

    config = write(tmp_path, 'preset = "quick"\n[weighting]\nname = "dwa"\n[weighting.options]\ntemperature = 3.0\n')
    with pytest.warns(C.ConfigWarning, match="weighting.name 'uncertainty' replaces 'dwa'.*weighting.options"):
        cfg = configure(None, config, {"weighting.name": "uncertainty"})
    assert cfg.weighting.options == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same choice: nothing dropped, nothing said
        kept = configure(None, config, {"weighting.name": "dwa"})
    assert kept.weighting.options == {"temperature": 3.0}


def test_set_reaches_every_key_and_is_checked(tmp_path):
    from mtlbench import settings as S
    from mtlbench.workflows.configure import configure

    cfg = configure("quick", None, {}, ["model.interaction.heads=2", "task_options.edge.thickness=2",
                                               "train.lr=0.01"])
    assert cfg.model.interaction["heads"] == 2 and cfg.task_options["edge"]["thickness"] == 2
    assert cfg.train.lr == 0.01
    assert S.parse_sets(["a.b=[1, 2]", "c=text"]) == {"a.b": [1, 2], "c": "text"}
    result = invoke("run", "--preset", "quick", "--set", "task_options.edge.thicknes=2", "--run-dir", tmp_path / "r")
    assert_bad_input(result, "task edge takes no option 'thicknes'", "did you mean 'thickness'")
    moved = invoke("run", "--preset", "quick", "--set", "data.edge_thickness=2", "--run-dir", tmp_path / "r")
    assert_bad_input(moved, "data.edge_thickness is now task_options.edge.thickness")


SPEC = """
name = "bad"
preset = "quick"
seeds = [0]

[base]
tasks = ["depth"]
model.name = "hps"
model.backbone = "test_resnet"
data.options.frames = 24
SETTING
"""


@pytest.mark.parametrize(("setting", "fragment"), [
    ('model.backbone = "no_such_net"', "unknown backbone 'no_such_net'"),
    ("data.size = 50", "data.size 50 does not fit backbone test_resnet"),
])
def test_a_bad_cell_is_refused_by_a_dry_run_before_any_run(tmp_path, setting, fragment):
    spec = write(tmp_path, SPEC.replace('model.backbone = "test_resnet"\n', "").replace("SETTING", setting)
                 if "backbone" in setting else SPEC.replace("SETTING", setting), "bad.toml")
    result = invoke("ablate", spec, "--out", tmp_path / "out", "--dry-run")
    assert_bad_input(result, fragment)
    assert not (tmp_path / "out").exists()


def test_old_data_keys_load_as_the_edge_tasks_options_with_one_line(tmp_path):
    from mtlbench.engine.build import resolve

    old = C.preset("quick")
    resolve(old)
    text = C.dumps(old).replace("[data]\n", "[data]\nedge_thickness = 2\nedge_targets = \"one_side\"\n"
                                           "depth_edges = 0.0\n")
    text = text.replace("\n[task_options.edge]\nthickness = 1\ntargets = \"both_sides\"\ndepth_edges = 0.0\n", "\n")
    with pytest.warns(C.ConfigWarning, match="data.edge_thickness is task_options.edge.thickness"):
        cfg = C.loads(text)
    assert cfg.task_options == {"edge": {"thickness": 2, "targets": "one_side", "depth_edges": 0.0}}
    untrained = C.from_dict({"tasks": ["depth"], "task_options": {"edge": {"thickness": 2}}}, C.RunConfig())
    with pytest.raises(MtlbenchError, match="task_options names task edge, which this run does not train"):
        C.validate(untrained)


def test_an_interrupted_sweep_run_continues_through_the_same_workflow_as_run_resume(tmp_path):
    """A sweep run cut after its first epoch resumes from its checkpoint (the first epoch is not
    trained again), and is rebuilt as the run it was made as: its config names a guidance edge of
    an untrained task, which a new run refuses and an existing one keeps (off)."""
    from mtlbench.ablation.execute import run_job
    from mtlbench.ablation.plan import Job, state
    from mtlbench.engine.build import resolve
    from mtlbench.workflows.train import train_run
    from tests.conftest import tiny_config

    cfg = tiny_config(tasks=["depth", "seg"], train={"epochs": 2}, model={"options": {"guidance": []}})
    resolve(cfg)
    run = tmp_path / "runs" / "r"

    class Cut(Exception):
        pass

    def cut(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Cut

    with pytest.raises(Cut):
        train_run(cfg, run, callbacks=[cut])
    first = (run / "log.jsonl").read_text().splitlines()
    assert len(first) == 1 and (run / "last.pt").is_file() and not (run / "metrics.json").exists()
    # as an earlier version wrote it: an edge of a task this run does not train (off when built)
    cfg.model.options["guidance"] = ["normals->depth"]
    text = C.dumps(cfg)
    (run / "config.toml").write_text(text)
    with pytest.raises(MtlbenchError, match="names normals, which this run does not train"):
        resolve(C.loads(text))  # as a new run
    job = Job(text, run, 0, ("depth", "seg"))
    assert state(job) == "partial"
    outcome = run_job(job)
    assert outcome.ok, outcome.error
    log = (run / "log.jsonl").read_text().splitlines()
    assert log[0] == first[0] and len(log) == 2  # epoch 1 kept, epoch 2 trained
    assert json.loads((run / "metrics.json").read_text())["test"]["depth"]["rmse"] > 0
