from __future__ import annotations

import json

import pytest

from mtlbench.config import load
from tests.conftest import TINY_ARGS as TINY
from tests.conftest import assert_bad_input, invoke


@pytest.mark.slow
def test_run_prints_the_table_and_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("run", "--model", "hps", "--task", "depth,seg", *TINY, "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "test metrics (hps" in result.stdout
    assert "RMSE m" in result.stdout and "mIoU" in result.stdout
    assert "F@0.5" not in result.stdout and "odsF" not in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"depth", "seg", "total"}
    assert metrics["tasks"] == ["depth", "seg"]
    assert 'tasks = ["depth", "seg"]' in (run_dir / "config.toml").read_text()


@pytest.mark.slow
def test_run_header_says_which_guidance_is_off(tmp_path):
    result = invoke("run", "--task", "depth,seg", *TINY, "--run-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "interaction guided_attention (dim=64, heads=1, grid=16)" in result.stderr
    assert "guidance at stride 16: seg→depth\n" in result.stderr
    assert "edge→depth guidance: off (edge not requested)" in result.stderr


@pytest.mark.slow
def test_resume_of_a_finished_run_reprints_its_metrics(tmp_path):
    run_dir = tmp_path / "run"
    first = invoke("run", "--task", "edge", *TINY, "--run-dir", str(run_dir))
    assert first.exit_code == 0, first.output
    before = (run_dir / "metrics.json").read_text()
    again = invoke("run", "--resume", "--run-dir", str(run_dir))
    assert again.exit_code == 0, again.output
    text = " ".join(again.stdout.split())  # rich wraps a title wider than its table
    assert "test metrics (mtinet, best epoch 1 of 1" in text and "odsF" in text
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["test"] == json.loads(before)["test"]


def test_resume_refuses_options_that_would_change_the_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")
    assert_bad_input(invoke("run", "--resume", "--run-dir", str(run_dir), "--epochs", "3", "--task", "seg"),
                     "a resumed run keeps its own config.toml: drop --epochs, --task")


@pytest.mark.slow
def test_a_config_file_keeps_its_model_and_tasks(tmp_path):
    first = tmp_path / "first"
    assert invoke("run", "--model", "hps", "--task", "depth", *TINY, "--run-dir", str(first)).exit_code == 0
    second = tmp_path / "second"
    result = invoke("run", "--config", str(first / "config.toml"), "--epochs", "1", "--run-dir", str(second))
    assert result.exit_code == 0, result.output
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["model"] == "hps" and metrics["tasks"] == ["depth"]
    assert_bad_input(invoke("run", "--config", str(first / "config.toml"), "--preset", "quick"),
                     "preset and config both give a whole configuration")
    # another model, tasks and weighting over a run's own config: its spelt-out options follow
    third = tmp_path / "third"
    result = invoke("run", "--config", first / "config.toml", "--model", "mtinet", "--task", "seg,edge",
                    "--weighting", "uncertainty", "--epochs", "1", "--run-dir", third)
    assert result.exit_code == 0, result.output
    cfg = load(third / "config.toml")
    assert cfg.model.options == {"interaction": "guided_attention", "guidance": ["seg->depth", "edge->depth"]}
    assert cfg.weighting.options == {}
    assert list(cfg.loss.names) == ["seg", "edge"] and cfg.train.select == "val/total/loss"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "mtinett"], ["unknown model 'mtinett'", "did you mean 'mtinet'"]),
        (["--task", "depth,segm"], ["unknown task 'segm'", "did you mean 'seg'"]),
        (["--task", ","], ["empty task list"]),
        (["--task", "depth,depth"], ["task listed twice: depth"]),
        (["--backbone", "resnet500"], ["unknown backbone 'resnet500'"]),
        (["--data", "nyu"], ["unknown dataset 'nyu'"]),
        (["--size", "100"], ["data.size (--size) 100 does not fit backbone test_resnet", "96 or 128"]),
        (["--epochs", "0"], ["train.epochs (--epochs) must be at least 1"]),
        (["--device", "tpu"], ["train.device", "'tpu' is not a device"]),
        (["--select", "val/normals/loss"], ["train.select"]),
        (["--select", "val/seg/mIoU"], ["seg has no metric 'mIoU'", "miou"]),
        (["--model", "hps", "--interaction", "guided_attention"],
         ["model.options.interaction", "model hps takes no option 'interaction'", "it takes no options"]),
        (["--data", "nyuv2", "--data-root", "x"], ["data.options.frames", "dataset nyuv2 takes no option 'frames'",
                                                   "it takes protocol, fractions"]),
        (["--classes", "13"], ["data.options.classes", "dataset synthrooms takes no option 'classes'"]),
        (["--protocol", "official"],
         ["data.options.protocol", "(dataset synthrooms): must be one of random, got 'official'"]),
        (["--weighting", "pcgard"], ["unknown weighting 'pcgard'", "did you mean 'pcgrad'"]),
        (["--split", "official"], ["--split is now --protocol", "--protocol official"]),
        (["--preset", "fast"], ["unknown preset 'fast'"]),
        (["--frames", "5"], ["the val and test splits are empty (5/0/0 frames)"]),
        (["--interaction", "nonexistent"], ["unknown interaction 'nonexistent'"]),
        (["--model", "smp_deeplabv3plus", "--task", "depth", "--batch-size", "1"],
         ["model smp_deeplabv3plus needs train.batch_size", "2 or more"]),
    ],
    ids=lambda v: v[0] if isinstance(v, list) and v and v[0].startswith("--") else None,
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, args, fragments):
    cache = tmp_path / "cache"  # cold: a check made after rendering would print progress first
    monkeypatch.setenv("MTLBENCH_CACHE", str(cache))
    run_dir = tmp_path / "run"
    base = dict(zip(TINY[::2], TINY[1::2]))
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    result = invoke("run", *flat, "--run-dir", str(run_dir))
    assert_bad_input(result, *fragments)
    assert not run_dir.exists()
    assert not cache.exists()  # nothing rendered


def test_a_gradient_weighting_needs_shared_parameters(tmp_path, isolated_registries):
    # known only once the model is built, after the frames are (a complete cache, reused later)
    from mtlbench.data import build_splits
    from mtlbench.models.multitask import hps

    def separate(*args, **kwargs):
        model = hps(*args, **kwargs)
        model.shared_modules = lambda: []  # every task on its own branch
        return model

    isolated_registries.MODELS.add("separate", separate)
    build_splits("synthrooms", size=64, frames=24)
    result = invoke("run", *TINY, "--model", "separate", "--task", "depth,seg", "--weighting", "pcgrad",
                    "--run-dir", tmp_path / "r")
    assert_bad_input(result, "weighting pcgrad combines the tasks' gradients of the shared parameters",
                     "model separate shares none on depth, seg")
    assert not (tmp_path / "r").exists()


def test_a_gradient_weighting_needs_two_tasks(tmp_path):
    result = invoke("run", *TINY, "--task", "depth", "--weighting", "mgda", "--run-dir", tmp_path / "r")
    assert_bad_input(result, "weighting mgda: it combines the gradients of several tasks and only depth is trained",
                     "set weighting.name (--weighting) to fixed")
    assert not (tmp_path / "r").exists()


def test_a_task_the_model_cannot_serve(tmp_path, isolated_registries):
    from mtlbench.models.multitask import hps

    isolated_registries.MODELS.add("depth_only", hps, tasks=("depth",))
    result = invoke("run", "--model", "depth_only", "--task", "depth,seg", *TINY, "--run-dir", str(tmp_path / "r"))
    assert_bad_input(result, "model depth_only cannot serve task seg: it serves depth")
    assert not (tmp_path / "r").exists()


def test_an_existing_run_directory_needs_resume_or_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    result = invoke("run", *TINY, "--run-dir", str(run_dir))
    assert_bad_input(result, f"run directory {run_dir} already exists", "--resume", "--overwrite")
    refused = invoke("run", *TINY, "--run-dir", str(run_dir), "--overwrite")
    assert_bad_input(refused, "refusing to overwrite", "not an mtlbench run directory")
    assert (run_dir / "notes.txt").read_text() == "mine"
    nothing = invoke("run", "--resume", "--run-dir", str(tmp_path / "absent"))
    assert_bad_input(nothing, "nothing to resume")


def test_an_unreadable_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("tasks = [depth\n")
    assert_bad_input(invoke("run", "--config", str(bad), "--run-dir", str(tmp_path / "r")), "is not valid TOML")
    typo = tmp_path / "typo.toml"
    typo.write_text("[train]\nepoch = 3\n")
    assert_bad_input(invoke("run", "--config", str(typo), "--run-dir", str(tmp_path / "r")),
                     "unknown key 'epoch'", "did you mean 'epochs'")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nepochs = \"many\"\n")
    assert_bad_input(invoke("run", "--config", str(wrong), "--run-dir", str(tmp_path / "r")),
                     "train.epochs: expected an integer")
    assert_bad_input(invoke("run", "--config", str(tmp_path / "none.toml")), "not found")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, fragment", [
    ("[loss.options.edge]\npos_weight = 1.0\n",
     "loss.options.edge.pos_weight (loss balanced_bce): must lie strictly between 0 and 1"),
    ("[train]\nweight_decay = -1.0\n", "train.weight_decay must not be negative"),
    ("[data.options]\nscene_seed = -1\n", "data.options.scene_seed (dataset synthrooms): must be at least 0"),
    ("[loss.options.depth]\nalpha = -1.0\n", "loss.options.depth.alpha (loss structured_depth): must be at least 0"),
    ("[data]\nclahe_clip = 0.0\n", "data.clahe_clip must be positive"),
    ("[data.options]\nfractions = [0.9, 0.1, 0.0]\nframes = 24\n", "the test split is empty"),
    ("[data.options]\nfractions = [0.9, 0.2, 0.0]\n",
     "must be three non-negative numbers (train/val/test) summing to 1"),
])
def test_out_of_range_config_values(tmp_path, text, fragment):
    path = tmp_path / "c.toml"
    path.write_text(text + "[model]\nbackbone = \"test_resnet\"\n" if "[model]" not in text else text)
    result = invoke("run", "--config", str(path), "--size", "64", "--run-dir", str(tmp_path / "r"))
    assert_bad_input(result, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, fragments", [
    ("[data.options]\nframe = 24\n", ["dataset synthrooms takes no option 'frame'", "did you mean 'frames'?"]),
    ("[model.options]\ninteractoin = \"guided_attention\"\n",
     ["model mtinet takes no option 'interactoin'", "did you mean 'interaction'?"]),
    ("[loss.options.depth]\nalpah = 1.0\n", ["loss structured_depth takes no option 'alpah'", "did you mean 'alpha'?"]),
    ("[weighting]\nname = \"fixed\"\n[weighting.options]\nweight = {depth = 2.0}\n",
     ["weighting fixed takes no option 'weight'", "did you mean 'weights'?"]),
    ("[loss.options.normals]\nalpha = 1.0\n", ["loss.options names task normals, which this run does not train"]),
    ("[data]\nframes = 24\n", ["data.frames is now data.options.frames"]),
    ("[loss]\ndepth_alpha = 2.0\n", ["loss.depth_alpha is now loss.options.depth.alpha"]),
])
def test_a_misspelt_option_in_a_config_file_is_refused_with_close_matches(tmp_path, text, fragments):
    path = tmp_path / "c.toml"
    path.write_text(text + "[model]\nbackbone = \"test_resnet\"\n" if "[model]" not in text else text)
    result = invoke("run", "--config", path, "--size", "64", "--run-dir", tmp_path / "r")
    assert_bad_input(result, *fragments)
    assert not (tmp_path / "r").exists()


def test_preset_dataset_options_apply_only_to_their_dataset():
    from mtlbench import config as C
    from mtlbench.engine.build import resolve

    quick = C.preset("quick")
    resolve(quick)
    assert quick.data.options["frames"] == 320  # the quick preset's synthrooms size
    other = C.preset("quick")
    other.data.name, other.data.root = "nyud_mt", "somewhere"
    resolve(other)  # no frames for a dataset that does not take them
    assert other.data.options == {"split_seed": 0, "val_frames": 80}


def test_overwrite_of_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    assert_bad_input(invoke("run", *TINY, "--run-dir", str(target), "--overwrite"), "is a file")


def test_list_shows_sources_and_rejects_unknown_kinds():
    result = invoke("list", "models")
    assert result.exit_code == 0
    assert "mtinet" in result.stdout and "built-in" in result.stdout and "hps" in result.stdout
    assert_bad_input(invoke("list", "modles"), "unknown registry 'modles'", "did you mean 'models'")


def test_an_error_names_the_key_and_adds_the_flag_only_where_a_flag_set_it(tmp_path):
    sizeless = [a for i, a in enumerate(TINY) if "--size" not in TINY[max(i - 1, 0):i + 1]]
    by_flag = invoke("run", *sizeless, "--size", "50", "--run-dir", tmp_path / "a")
    assert_bad_input(by_flag, "data.size (--size)")
    by_set = invoke("run", *sizeless, "--set", "data.size=50", "--run-dir", tmp_path / "b")
    assert_bad_input(by_set, "data.size")
    assert "--size" not in by_set.stderr
    config = tmp_path / "c.toml"
    config.write_text('preset = "quick"\n[data]\nsize = 50\n')
    by_file = invoke("run", "--config", config, "--backbone", "test_resnet", "--run-dir", tmp_path / "c")
    assert_bad_input(by_file, "data.size")
    assert "--size" not in by_file.stderr and not any((tmp_path / p).exists() for p in "abc")


def test_with_flags_annotates_whole_keys_once():
    from mtlbench.cli.common import with_flags

    flags = {"data.size": "--size", "config": "--config"}
    assert with_flags("data.size 50: data.size must be a multiple of 32", flags) == \
        "data.size (--size) 50: data.size must be a multiple of 32"
    assert with_flags("data.sizes and my.data.size and config.toml", flags) == \
        "data.sizes and my.data.size and config.toml"  # neither whole keys nor dotted
    assert with_flags("the --size flag is wrong", {"data.size": "--size"}) == "the --size flag is wrong"
