"""``mtlbench ablate``: specs, plans, execution, resumption, shards, submitit, tables."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtlbench import config as C
from mtlbench.ablation.plan import apply, make_plan, state
from mtlbench.ablation.report import holm, welch_p
from mtlbench.ablation.spec import load_spec
from mtlbench.errors import MtlbenchError
from mtlbench.report.results import delta_m, flat
from tests.conftest import assert_bad_input, invoke

# a sweep of two axes (2 × 2) over a model that trains in about a second
TINY_SPEC = """
name = "tiny"
preset = "quick"
seeds = [0, 1]
columns = ["depth/rmse", "seg/miou", "seg/pixel_acc"]
compare_to = "weighting=fixed, lr=0.001"

[base]
tasks = ["depth", "seg"]
model.name = "hps"
model.backbone = "test_resnet"
model.width = 16
data.size = 64
data.options.frames = 24
train.epochs = EPOCHS
train.batch_size = 8
train.device = "cpu"

[references]
set = { "model.name" = "hps" }

[[axes]]
key = "weighting.name"
values = ["fixed", "uncertainty"]

[[axes]]
key = "train.lr"
values = [1e-3, 1e-2]
"""


# the same without a comparison row, for specs that add rows (which rename the cells)
PLAIN_SPEC = TINY_SPEC.replace('compare_to = "weighting=fixed, lr=0.001"', "")


def write_spec(folder: Path, text: str = TINY_SPEC, epochs: int = 1, name: str = "tiny.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text.replace("EPOCHS", str(epochs)))
    return path


def ablate(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``mtlbench ablate`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "mtlbench", "ablate", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def table_values(out: Path) -> list[dict]:
    return json.loads((out / "table.json").read_text())[0]["values"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep, run once without interruption."""
    root = tmp_path_factory.mktemp("whole")
    spec = write_spec(root, epochs=2)
    done = ablate(spec, "--out", root / "out")
    assert done.returncode == 0, done.stderr
    return root / "out"


# -- the spec ----------------------------------------------------------------------------------

def test_cells_are_rows_times_the_grid_or_the_zip(tmp_path):
    spec = load_spec(write_spec(tmp_path, PLAIN_SPEC + '\n[[rows]]\nname = "a"\n[[rows]]\nname = "b"\n'
                                "set = { \"model.width\" = 8 }\n"))
    assert len(spec.cells) == 2 * 2 * 2
    assert spec.cells[0].label == "a, weighting=fixed, lr=0.001"
    assert spec.cells[-1].settings == {"model.width": 8, "weighting.name": "uncertainty", "train.lr": 1e-2}
    zipped = load_spec(write_spec(tmp_path, 'combine = "zip"\n' + PLAIN_SPEC, name="zip.toml"))
    assert [c.label for c in zipped.cells] == ["weighting=fixed, lr=0.001", "weighting=uncertainty, lr=0.01"]


@pytest.mark.parametrize("edit, fragment", [
    (('values = [1e-3, 1e-2]', 'values = []'), "axis 'train.lr' has no values"),
    (("seeds = [0, 1]", "seeds = [0, 1, 0]"), "seeds repeat 0"),
    (('name = "tiny"', 'name = "tiny"\nsedes = [1]'), "unknown key 'sedes' (did you mean 'seeds'?)"),
    (('compare_to = "weighting=fixed, lr=0.001"', 'compare_to = "weighting=fixed"'), "compare_to 'weighting=fixed'"),
])
def test_bad_specs_are_one_line_and_nothing_runs(tmp_path, edit, fragment):
    spec = write_spec(tmp_path, TINY_SPEC.replace(*edit))
    assert_bad_input(invoke("ablate", spec, "--out", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, fragment", [
    (('key = "train.lr"', 'key = "train.lrate"'), "cell 'weighting=fixed, lrate=0.001'"),
    (('key = "weighting.name"', 'key = "weighting.nmae"'), "unknown key 'nmae' (did you mean 'name'?)"),
    (('values = ["fixed", "uncertainty"]', 'values = ["fixed", "uncertainity"]'), "uncertainty"),
    (('model.width = 16', 'model.width = 16\nmodel.options.gate = 1'), "takes no option 'gate'"),
])
def test_every_cell_is_resolved_before_anything_runs(tmp_path, edit, fragment):
    spec = write_spec(tmp_path, PLAIN_SPEC.replace(*edit))
    result = invoke("ablate", spec, "--out", tmp_path / "out")
    assert_bad_input(result, fragment)
    assert not (tmp_path / "out").exists()


def test_settings_replace_the_options_of_what_they_replace():
    base = C.preset("quick")
    cfg = apply(base, {"weighting.name": "dwa", "weighting.options.temperature": 3.0}, "cell")
    assert (cfg.weighting.name, cfg.weighting.options) == ("dwa", {"temperature": 3.0})
    cfg = apply(base, {"loss.options.depth.beta": 0.0}, "cell")
    assert cfg.loss.options == {"depth": {"beta": 0.0}} and base.loss.options == {}  # the base is untouched
    swapped = apply(apply(base, {"loss.options.depth.beta": 0.0}, "a"), {"loss.names.depth": "l1_depth"}, "b")
    assert swapped.loss.names == {"depth": "l1_depth"} and "depth" not in swapped.loss.options
    with pytest.raises(MtlbenchError, match="set by the spec's seeds"):
        apply(base, {"train.seed": 3}, "cell")


def test_references_are_shared_between_cells_and_follow_the_data(tmp_path):
    spec = load_spec(write_spec(tmp_path, PLAIN_SPEC + '\n[[rows]]\nname = "small"\nset = { "data.size" = 32 }\n'
                                '[[rows]]\nname = "other"\nset = { "train.epochs" = 2 }\n'))
    plan = make_plan(spec, tmp_path / "out")
    refs = {label: {t: by_seed[0].run_dir for t, by_seed in by_task.items()}
            for label, by_task in plan.references.items()}
    other = refs["other, weighting=fixed, lr=0.001"]
    assert refs["other, weighting=uncertainty, lr=0.01"] == other  # shared: epochs are not followed
    assert refs["small, weighting=fixed, lr=0.001"]["depth"] != other["depth"]  # data.size is
    small = C.loads(plan.references["small, weighting=fixed, lr=0.001"]["depth"][0].config)
    assert (small.data.size, small.model.name, small.tasks) == (32, "hps", ["depth"])
    assert len({j.run_dir for j in plan.jobs}) == len(plan.jobs) == 16 + 2 * 2 * 2  # 8 cells × 2 seeds + refs


# -- statistics ------------------------------------------------------------------------------

def test_welch_and_holm_against_hand_computed_values():
    # t = (2 − 5) / sqrt(1/3 + 1/3) = −3.674, Welch df = 4: two-sided p = 0.02131
    assert welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.02131, abs=2e-5)
    assert welch_p([1, 1], [1, 1]) is None and welch_p([1], [2, 3]) is None
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])


# -- running -------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_table_is_the_cells_own_metrics(whole):
    manifest = json.loads((whole / "sweep.json").read_text())
    rows = {r["setting"]: r for r in table_values(whole)}
    refs = manifest["references"]["weighting=fixed, lr=0.001"]
    reference = {}
    for task, by_seed in refs.items():
        runs = [flat(json.loads((Path(d) / "metrics.json").read_text())["test"]) for d in by_seed.values()]
        reference.update({k: statistics.fmean(r[k] for r in runs) for k in runs[0] if k.startswith(task + "/")})
    for label, by_seed in manifest["cells"].items():
        runs = [flat(json.loads((Path(d) / "metrics.json").read_text())["test"]) for d in by_seed.values()]
        row = rows[label]
        assert row["seeds"] == [0, 1]
        for key in ("depth/rmse", "seg/miou", "seg/pixel_acc"):
            values = [r[key] for r in runs]
            assert row["mean"][key] == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert row["std"][key] == pytest.approx(statistics.stdev(values), abs=1e-12)
        deltas = [delta_m(r, reference, ["depth", "seg"], "mti") for r in runs]
        assert row["mean"]["delta/mti"] == pytest.approx(statistics.fmean(deltas), abs=1e-9)
    compared = rows["weighting=fixed, lr=0.001"]
    others = [r for label, r in rows.items() if label not in ("weighting=fixed, lr=0.001", "single-task references")]
    for key in ("depth/rmse", "seg/pixel_acc", "delta/mti"):
        p = [welch_p(r["values"][key], compared["values"][key]) for r in others]
        assert [r["p_welch"][key] for r in others] == pytest.approx(p)
        assert [r["p_holm"][key] for r in others] == pytest.approx(holm(p))
    for key in ("depth/rmse", "seg/miou", "delta/mti"):  # the best mean of each column, in bold
        means = {label: r["mean"][key] for label, r in rows.items() if key in r.get("mean", {})}
        best = (min if key == "depth/rmse" else max)(means.values())
        assert {label for label, m in means.items() if m == best} == {
            label for label, r in rows.items() if key in r.get("best", [])}
        lines = {line[2:].split(" | ")[0]: line for line in (whole / "table.md").read_text().splitlines()
                 if line.startswith("| ")}
        assert all("**" in lines[label] for label, m in means.items() if m == best)
    md = (whole / "table.md").read_text()
    assert "| single-task references |" in md and md.count("2/2") == 5
    assert (whole / "figure.png").stat().st_size > 1000 and "\\toprule" in (whole / "table.tex").read_text()


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_retraining_and_ends_identical(whole, tmp_path):
    spec = write_spec(tmp_path, epochs=2)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mtlbench", "ablate", str(spec), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})

    def halfway() -> list[Path]:  # runs with their first epoch's checkpoint and no metrics yet
        return [d for d in out.glob("runs/*") if (d / "last.pt").is_file() and not (d / "metrics.json").exists()]

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list(out.glob("runs/*/metrics.json")) and halfway():
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert 0 < len(done) < 12, "the sweep was not killed mid-way"  # killed mid-sweep
    resumed = {d: (d / "log.jsonl").read_text().splitlines()[0] for d in halfway()}
    assert resumed, "no run was caught between its epochs"
    again = ablate(spec, "--out", out)
    assert again.returncode == 0, again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished runs were not retrained
    assert re.search(rf"(^|\s){len(done)} done;", again.stderr) and f"{len(resumed)} partial" in again.stderr
    for d, first_epoch in resumed.items():  # resumed after epoch 1, not trained again from scratch
        assert (d / "log.jsonl").read_text().splitlines()[0] == first_epoch
    assert table_values(out) == table_values(whole)


@pytest.mark.slow
def test_shards_are_disjoint_complete_and_give_the_whole_table(whole, tmp_path):
    spec = write_spec(tmp_path, epochs=2)
    plan = make_plan(load_spec(spec), tmp_path / "out")
    first, second = plan.shard(1, 2), plan.shard(2, 2)
    assert not {j.run_dir for j in first} & {j.run_dir for j in second}
    assert sorted(j.run_dir for j in first + second) == sorted(j.run_dir for j in plan.jobs)
    one = ablate(spec, "--out", tmp_path / "out", "--shard", "1/2", "--jobs", "2")
    assert one.returncode == 0, one.stderr
    assert {state(j) for j in first} == {"done"} and {state(j) for j in second} == {"missing"}
    two = ablate(spec, "--out", tmp_path / "out", "--shard", "2/2")
    assert two.returncode == 0, two.stderr
    assert table_values(tmp_path / "out") == table_values(whole)


@pytest.mark.slow
def test_a_failing_run_is_recorded_the_others_go_on_and_a_rerun_retries_it(tmp_path):
    text = PLAIN_SPEC.replace('values = [1e-3, 1e-2]', 'values = [1e-3]').replace("seeds = [0, 1]", "seeds = [0]")
    text += '\n[[rows]]\nname = "ok"\n[[rows]]\nname = "broken"\nset = { "data.name" = "nyud_mt", ' \
            f'"data.root" = "{tmp_path / "nowhere"}" }}\n'
    spec = write_spec(tmp_path, text)
    first = ablate(spec, "--out", tmp_path / "out")
    assert first.returncode == 1
    assert "FAILED" in first.stderr and "'ok, weighting=fixed, lr=0.001' seed 0: done" in first.stderr
    md = (tmp_path / "out" / "table.md").read_text()
    assert "broken, weighting=fixed, lr=0.001 | – |" in md and "seed 0 failed" in md
    again = ablate(spec, "--out", tmp_path / "out")
    assert again.returncode == 1 and "failed" in again.stderr.splitlines()[1]  # planned as failed, retried
    assert again.stderr.count("FAILED") == first.stderr.count("FAILED")


@pytest.mark.slow
def test_a_corrupt_run_directory_is_rerun_never_averaged(tmp_path):
    text = TINY_SPEC.replace('values = [1e-3, 1e-2]', 'values = [1e-3]').replace(
        'values = ["fixed", "uncertainty"]', 'values = ["fixed"]').replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace("[references]\nset = { \"model.name\" = \"hps\" }\n", "")
    spec = write_spec(tmp_path, text)
    assert ablate(spec, "--out", tmp_path / "out").returncode == 0
    (run,) = make_plan(load_spec(spec), tmp_path / "out").jobs
    good = json.loads((run.run_dir / "metrics.json").read_text())
    (run.run_dir / "metrics.json").write_text('{"test": {"depth": {"rmse": 99')  # cut short
    assert state(run) == "corrupt"
    dry = ablate(spec, "--out", tmp_path / "out", "--report-only")
    assert "| weighting=fixed, lr=0.001 | – |" in (tmp_path / "out" / "table.md").read_text(), dry.stderr
    assert ablate(spec, "--out", tmp_path / "out").returncode == 0
    assert json.loads((run.run_dir / "metrics.json").read_text())["test"] == good["test"]


@pytest.mark.slow
def test_the_slurm_path_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'mtlbench[slurm]')")
    text = TINY_SPEC.replace('values = [1e-3, 1e-2]', 'values = [1e-3]').replace("seeds = [0, 1]", "seeds = [0]")
    spec = write_spec(tmp_path, text + '\n[executor]\npartition = "gpu"\ntime = 10\n')
    done = ablate(spec, "--out", tmp_path / "out", "--executor", "submitit-local")
    assert done.returncode == 0, done.stderr
    assert "submitted job array" in done.stderr
    plan = make_plan(load_spec(spec), tmp_path / "out")
    assert {state(j) for j in plan.jobs} == {"done"} and len(plan.jobs) == 2 + 2
    assert list((tmp_path / "out" / "submitit").glob("*_log.out"))


def test_an_out_folder_of_another_sweep_or_a_missing_submitit_is_refused(tmp_path, monkeypatch):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text('{"name": "other"}')
    assert_bad_input(invoke("ablate", spec, "--out", out), "holds sweep 'other', not 'tiny'")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert_bad_input(invoke("ablate", spec, "--out", tmp_path / "busy"), "is not a sweep folder")
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails
    assert_bad_input(invoke("ablate", spec, "--out", tmp_path / "new", "--executor", "slurm"),
                     "pip install 'mtlbench[slurm]'")
    assert_bad_input(invoke("ablate", spec, "--shard", "3/2"), "shard '3/2'")
    assert not (tmp_path / "new").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path)
    result = invoke("ablate", spec, "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "4 cells × 2 seeds + 4 reference runs = 12 runs" in result.stderr
    assert result.stderr.count("missing") == 13 and not (tmp_path / "out").exists()


def test_the_old_preset_and_protocol_names_plan_the_new_ones_with_one_warning_line_each(tmp_path):
    """A spec of an earlier version (preset = "seed"), and ``--preset seed``, ``--set
    data.options.protocol=seed``: the runs are planned under the new names, one line for each."""
    old = write_spec(tmp_path, TINY_SPEC.replace('preset = "quick"', 'preset = "seed"'), name="old.toml")
    with pytest.warns(C.ConfigWarning) as record:
        spec = load_spec(old)
    assert spec.preset == "beneath" and [str(w.message) for w in record] == ['preset "seed" is now "beneath"']
    result = ablate(write_spec(tmp_path), "--preset", "seed", "--set", "data.options.protocol=seed", "--out",
                    tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        'warning: preset "seed" is now "beneath"', 'warning: data.options.protocol "seed" is now "random"']
    assert "12 runs" in result.stderr


SPECS = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations"


@pytest.mark.parametrize("name", ["seed_guidance", "seed_depth_loss", "interactions", "weightings", "backbones",
                                  "task_graph"])
def test_every_shipped_spec_plans_on_the_quick_and_the_beneath_preset(name, tmp_path):
    from mtlbench.ablation.sweep import prepare
    from mtlbench.registry import INTERACTIONS, WEIGHTINGS

    quick = prepare(SPECS / f"{name}.toml", tmp_path / "q", None)
    beneath = prepare(SPECS / f"{name}.toml", tmp_path / "s", None, preset="beneath")
    assert len(quick.jobs) == len(beneath.jobs) and not ({j.run_dir.name for j in quick.jobs}
                                                         & {j.run_dir.name for j in beneath.jobs})
    assert C.loads(beneath.jobs[0].config).model.backbone == ("resnet18" if name == "backbones" else "resnet50")
    cells = {"weightings": len(WEIGHTINGS), "interactions": 1 + len(INTERACTIONS), "backbones": 3,
             "task_graph": 5}.get(name, 4)
    assert len(quick.cells) == cells and all(len(by_seed) == 3 for by_seed in quick.cells.values())


def test_sweeps_sharing_a_store_share_their_common_runs(tmp_path):
    from mtlbench.ablation.sweep import prepare

    store = tmp_path / "store"
    guidance = prepare(SPECS / "seed_guidance.toml", tmp_path / "g", store)
    loss = prepare(SPECS / "seed_depth_loss.toml", tmp_path / "l", store)
    shared = {j.run_dir for j in guidance.jobs} & {j.run_dir for j in loss.jobs}
    papers_row = {j.run_dir for j in guidance.cells["seg→depth + edge→depth (the paper's)"].values()}
    assert papers_row == {j.run_dir for j in loss.cells["L1 + gradient + edge-aware (the paper's)"].values()}
    assert shared == papers_row | {j.run_dir for by_task in guidance.references["no guidance"].values()
                                 for j in by_task.values()}
    assert len(shared) == 3 + 9
    off = C.loads(guidance.cells["no guidance"][0].config)
    assert off.model.options["guidance"] == [] and off.train.seed == 0
    l1 = C.loads(loss.cells["L1"][2].config)
    assert l1.loss.options["depth"] == {"alpha": 1.0, "beta": 0.0, "gamma": 0.0} and l1.train.seed == 2


def test_registered_values_rows_outside_the_axes_and_command_line_overrides(tmp_path):
    from mtlbench.ablation.sweep import parse_seeds, prepare
    from mtlbench.registry import WEIGHTINGS
    from mtlbench.settings import parse_sets

    text = PLAIN_SPEC.replace('values = ["fixed", "uncertainty"]', 'values = { registered = "weightings", '
                              'exclude = ["fixed"] }').replace('values = [1e-3, 1e-2]', "values = [1e-3]")
    text += '\n[[rows]]\nname = "plain sum"\naxes = false\nset = { "weighting.name" = "fixed" }\n'
    spec = load_spec(write_spec(tmp_path, text))
    assert [c.label for c in spec.cells][:2] == ["plain sum", "weighting=aligned_mtl, lr=0.001"]
    assert len(spec.cells) == 1 + len(WEIGHTINGS) - 1
    sets = parse_sets(["train.epochs=2", "data.name=synthrooms", "data.scale=[0.5, 1.0]"])
    assert sets == {"train.epochs": 2, "data.name": "synthrooms", "data.scale": [0.5, 1.0]}
    plan = prepare(write_spec(tmp_path, TINY_SPEC, name="t.toml"), tmp_path / "o", None, None, sets, parse_seeds("4,5"))
    by_seed = plan.cells["weighting=fixed, lr=0.001"]
    cfg = C.loads(by_seed[5].config)
    assert (cfg.train.epochs, cfg.data.scale, sorted(by_seed)) == (2, [0.5, 1.0], [4, 5])
    with pytest.raises(MtlbenchError, match="seeds '1,1'"):
        parse_seeds("1,1")
    with pytest.raises(MtlbenchError, match="KEY=VALUE"):
        parse_sets(["epochs"])


def test_cells_that_read_alike_are_refused(tmp_path):
    text = PLAIN_SPEC + '\n[[rows]]\nname = "weighting=fixed, lr=0.01"\naxes = false\n'
    assert_bad_input(invoke("ablate", write_spec(tmp_path, text), "--out", tmp_path / "out"),
                     "two cells are labelled 'weighting=fixed, lr=0.01'")
    close = PLAIN_SPEC.replace("values = [1e-3, 1e-2]", "values = [0.1234567, 0.1234568]")
    assert_bad_input(invoke("ablate", write_spec(tmp_path, close, name="c.toml"), "--out", tmp_path / "out"),
                     "labels = [...]")


def fake_run(job, test: dict, record: dict, history: list | None = None) -> None:
    """A run directory as a finished run leaves it, written by hand."""
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "config.toml").write_text(job.config)
    metrics = {"test": test, "eval": {"test": record}, **({"history": history} if history else {})}
    (job.run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_only_the_runs_own_evaluation_is_averaged(tmp_path):
    import dataclasses

    from mtlbench.ablation.plan import test_result

    plan = make_plan(load_spec(write_spec(tmp_path)), tmp_path / "out")
    first, second, third = plan.jobs[:3]
    own = {**dataclasses.asdict(C.loads(first.config).eval), "edge_matching": "exact", "checkpoint": "best"}
    fake_run(first, {"depth": {"rmse": 1.0}}, own)
    assert test_result(first) == {"depth": {"rmse": 1.0}} and state(first) == "done"
    # `mtlbench eval --checkpoint last` replaced metrics["test"]; the run's own numbers are in the history
    fake_run(second, {"depth": {"rmse": 9.0}}, {**own, "checkpoint": "last"},
             [{"split": "test", **own, "result": {"depth": {"rmse": 2.0}}},
              {"split": "test", **own, "checkpoint": "last", "result": {"depth": {"rmse": 9.0}}}])
    assert test_result(second) == {"depth": {"rmse": 2.0}}
    fake_run(third, {"depth": {"rmse": 9.0}}, {**own, "eigen_crop": True})  # and no history of its own
    assert test_result(third) is None and state(third) == "corrupt"


def test_a_run_another_live_process_trains_is_left_to_it(tmp_path):
    from mtlbench.ablation.execute import run_job
    from mtlbench.ablation.plan import acquire, lock_path, release

    plan = make_plan(load_spec(write_spec(tmp_path)), tmp_path / "out")
    job = plan.jobs[0]
    assert acquire(job) and state(job) == "running"
    outcome = run_job(job)
    assert outcome.busy and not outcome.ok and not job.run_dir.exists()
    release(job)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(job).write_text(f"{socket.gethostname()}:{gone.stdout.strip()}\n")  # its process has exited
    assert state(job) == "missing" and acquire(job)
    release(job)


def test_workers_keep_the_gpu_mask_they_were_given(monkeypatch):
    from mtlbench.ablation.execute import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus(2) == ["2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus(2) == ["0", "1"] and visible_gpus(0) == []


def test_the_task_graph_sweep_shares_the_guidance_sweeps_papers_and_unguided_runs(tmp_path):
    from mtlbench.ablation.sweep import prepare

    store = tmp_path / "store"
    guidance = prepare(SPECS / "seed_guidance.toml", tmp_path / "g", store)
    graph = prepare(SPECS / "task_graph.toml", tmp_path / "t", store)
    for mine, theirs in (("seg→depth, edge→depth @16 (the paper's)", "seg→depth + edge→depth (the paper's)"),
                         ("no guidance", "no guidance")):
        assert graph.cells[mine] == guidance.cells[theirs]
