"""Config files: the options tables written out and read back, and files of earlier versions."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from mtlbench import config as C
from mtlbench import settings as S
from mtlbench.engine.build import resolve
from mtlbench.errors import MtlbenchError
from tests.conftest import TINY_ARGS, invoke, tiny_config

# a config.toml as the version before the options tables wrote it (every key spelt out)
LEGACY = """tasks = ["depth", "edge"]
preset = "seed"

[data]
name = "nyuv2"
root = "/data/nyuv2"
size = 256
frames = 1449
split = "official"
fractions = [0.8, 0.1, 0.1]
split_seed = 3
val_frames = 80
classes = 13
raw_depth = false
scene_seed = 0
holes = false
max_depth = 10.0

[model]
name = "mtinet"
backbone = "resnet50"
interaction = "guided_attention"

[loss]
depth = "structured_depth"
seg = ""
edge = "balanced_bce"
depth_alpha = 2.0
depth_beta = 1.0
depth_gamma = 0.5
edge_pos_weight = 0.9
weighting = "fixed"
weights = {depth = 3.0}
"""


def test_a_config_written_out_reads_back_equal(tmp_path):
    cfg = tiny_config(weighting={"name": "fixed", "options": {"weights": {"depth": 2.0}}})
    resolve(cfg)
    path = tmp_path / "config.toml"
    path.write_text(C.dumps(cfg))
    assert C.load(path) == cfg
    text = path.read_text()
    assert "[data.options]\nframes = 40\n" in text and "[weighting.options]\nweights = {depth = 2.0}\n" in text


def test_a_config_of_the_earlier_layout_keeps_what_its_run_used(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(LEGACY)
    cfg = C.load(path)
    assert cfg.data.options == {"protocol": "official", "fractions": [0.8, 0.1, 0.1], "split_seed": 3,
                                "val_frames": 80, "classes": 13, "raw_depth": False}  # nyuv2's, no frames
    assert (cfg.data.root, cfg.data.size) == ("/data/nyuv2", 256)
    assert cfg.model.options == {"interaction": "guided_attention"}
    assert cfg.loss.names == {"depth": "structured_depth", "edge": "balanced_bce"}
    assert cfg.loss.options == {"depth": {"alpha": 2.0, "beta": 1.0, "gamma": 0.5}, "edge": {"pos_weight": 0.9}}
    assert (cfg.weighting.name, cfg.weighting.options) == ("fixed", {"weights": {"depth": 3.0}})


def test_old_keys_in_a_new_file_say_where_they_moved(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[data]\nframes = 24\n")
    with pytest.raises(MtlbenchError, match=r"data.frames is now data.options.frames"):
        C.load(path)
    path.write_text("[data]\nsplit = \"official\"\n")
    with pytest.raises(MtlbenchError, match=r"data.split is now data.options.protocol"):
        C.load(path)
    path.write_text("[loss]\nweighting = \"uncertainty\"\n")  # part of an old file: not read as one
    with pytest.raises(MtlbenchError, match=r"loss.weighting is now weighting.name"):
        C.load(path)


def test_an_unknown_key_in_an_old_file_is_still_refused(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(LEGACY.replace("max_depth = 10.0", "max_depth = 10.0\ncolour_jitter = 0.5"))
    with pytest.raises(MtlbenchError, match=r"unknown key 'colour_jitter' \(did you mean 'color_jitter'\?\)"):
        C.load(path)


def test_settings_over_a_resolved_config_drop_the_tables_of_what_they_replace():
    base = tiny_config(tasks=["depth", "seg"], weighting={"name": "fixed", "options": {"weights": {"seg": 2.0}}})
    resolve(base)
    assert base.train.select == "val/depth/loss"
    assert base.model.options == {"interaction": "guided_attention", "guidance": ["seg->depth", "edge->depth"]}
    cfg = C.from_dict({"model": {"name": "hps"}, "data": {"name": "nyud_mt", "root": "x"}, "tasks": ["seg"]}, base)
    S.rebase(cfg, base)
    resolve(cfg)
    assert cfg.model.options == {} and cfg.data.options == {"split_seed": 0, "val_frames": 80}
    assert list(cfg.loss.names) == ["seg"] and cfg.train.select == "val/total/loss"  # the default followed
    assert cfg.weighting.options == {"weights": {"seg": 2.0}}  # same method: its options stay
    chosen = tiny_config(tasks=["depth", "seg"], train={"select": "val/seg/miou"})
    resolve(chosen)
    kept = C.from_dict({"tasks": ["seg"]}, chosen)
    S.rebase(kept, chosen)
    assert kept.train.select == "val/seg/miou"  # a criterion chosen by hand is kept


def test_option_defaults_are_never_shared_with_a_run():
    first = tiny_config()
    resolve(first)
    first.data.options["fractions"][0] = 0.5
    first.weighting.options["weights"]["depth"] = 5.0
    second = tiny_config()
    resolve(second)
    assert second.data.options["fractions"] == [0.8, 0.1, 0.1] and second.weighting.options["weights"] == {}


def test_an_option_without_a_default_is_refused_at_registration(isolated_registries):
    with pytest.raises(MtlbenchError, match="option 'extra' has no default"):
        isolated_registries.LOSSES.register("no_default", options={"extra": None})(lambda info, extra: None)


@pytest.mark.parametrize("text, key", [
    ("[eval]\nmax_depth = -1.0\n", "eval.max_depth"),
    ("[eval]\nmin_depth = -1.0\n", "eval.min_depth"),
    ("[eval]\nedge_tolerance = 2.0\n", "eval.edge_tolerance"),
    ("[eval]\nedge_thresholds = 0\n", "eval.edge_thresholds"),
    ("[eval]\nresolution = \"native\"\n", "eval.resolution"),
    ("[train]\ncompile = \"sometimes\"\n", "train.compile"),
    ("[train]\nprecision = \"fp8\"\n", "train.precision"),
    ("[train]\ndevice = \"tpu\"\n", "train.device"),
    ("[data]\nsize = 16\n", "data.size"),
])
def test_a_bad_value_in_a_config_file_names_its_key_and_no_flag(tmp_path, text, key):
    # the CLI adds the flag after the key where a flag set the value; a file names no flag
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(MtlbenchError) as err:
        C.load(path)
    assert key in str(err.value) and "--" not in str(err.value), str(err.value)


@pytest.mark.parametrize("sections, fragments", [
    ({"data": {"options": {"classes": 13}}}, ["data.options.classes: dataset synthrooms takes no option 'classes'"]),
    ({"data": {"options": {"frames": 0}}}, ["data.options.frames (dataset synthrooms): must be at least 1"]),
    ({"model": {"name": "hps", "options": {"interaction": "film"}}},
     ["model.options.interaction: model hps takes no option 'interaction'"]),
    ({"tasks": ["depth"], "model": {"name": "smp_deeplabv3plus"}, "train": {"batch_size": 1}},
     ["needs train.batch_size 2 or more"]),
    ({"tasks": ["depth"], "weighting": {"name": "mgda"}}, ["set weighting.name to fixed"]),
])
def test_resolving_a_config_names_the_keys_of_its_errors_and_no_flag(sections, fragments):
    cfg = tiny_config(**sections)
    with pytest.raises(MtlbenchError) as err:
        resolve(cfg)
    message = str(err.value)
    assert all(f in message for f in fragments) and "--" not in message, message


def test_a_precision_or_device_the_machine_lacks_names_its_key():
    import torch

    from mtlbench.engine.build import resolve_device, resolve_precision

    with pytest.raises(MtlbenchError, match=r"^train\.precision fp16 needs a GPU") as err:
        resolve_precision("fp16", torch.device("cpu"))
    assert "--" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(MtlbenchError, match=r"^train\.device cuda asked for, but torch sees no CUDA GPU: "
                                                r"use cpu or auto$"):
            resolve_device("cuda")


# ------------------------------------------------------------- names of earlier versions
# The preset "seed" is "beneath" (the protocol of Beneath the Surface) and the split protocol "seed"
# of the built-in datasets is "random"; what names them the old way loads, one line for each.
OLD_PRESET = 'preset "seed" is now "beneath"'
OLD_PROTOCOL = 'data.options.protocol "seed" is now "random"'


def _messages(record) -> list[str]:
    """The lines about renamed values (an old file may have other old keys, each with its line)."""
    return [str(w.message) for w in record if issubclass(w.category, C.ConfigWarning) and " is now \"" in
            str(w.message)]


def test_a_config_of_an_earlier_version_naming_seed_loads_the_new_names_with_one_line_each(tmp_path):
    cfg = tiny_config()
    resolve(cfg)
    assert (cfg.preset, cfg.data.options["protocol"]) == ("beneath", "random")
    text = C.dumps(cfg)
    old = text.replace('preset = "beneath"', 'preset = "seed"').replace('protocol = "random"', 'protocol = "seed"')
    assert old.count('"seed"') == 2
    path = tmp_path / "config.toml"
    path.write_text(old)
    with pytest.warns(C.ConfigWarning) as record:
        loaded = C.load(path)
    assert _messages(record) == [OLD_PRESET, OLD_PROTOCOL]
    assert loaded == cfg and C.dumps(loaded) == text
    # a file of the layout before the options tables, whose data.split was "seed"
    path.write_text(LEGACY.replace('split = "official"', 'split = "seed"'))
    with pytest.warns(C.ConfigWarning) as record:
        legacy = C.load(path)
    assert _messages(record) == [OLD_PRESET, OLD_PROTOCOL]
    assert (legacy.preset, legacy.data.options["protocol"]) == ("beneath", "random")


def test_settings_and_presets_of_the_old_names_give_the_new_ones_with_one_line():
    with pytest.warns(C.ConfigWarning) as record:
        cfg = C.preset("seed")
    assert _messages(record) == [OLD_PRESET] and cfg.preset == "beneath" and cfg == C.preset("beneath")
    for dataset in ("synthrooms", "nyuv2"):
        with pytest.warns(C.ConfigWarning) as record:
            cfg = S.apply(C.preset("quick"), {"data.name": dataset, "data.options.protocol": "seed"}, "setting")
        assert _messages(record) == [OLD_PROTOCOL] and cfg.data.options["protocol"] == "random"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # a plugin's dataset keeps its own protocol names; the new names say nothing
        assert C.protocol_name("my_dataset", "seed") == "seed"
        assert C.protocol_name("nyuv2", "random") == "random" and C.preset_name("beneath") == "beneath"


@pytest.mark.slow
def test_run_with_the_old_preset_and_protocol_flags_trains_under_the_new_names(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.warns(C.ConfigWarning) as record:
        result = invoke("run", "--preset", "seed", "--protocol", "seed", "--task", "depth", *TINY_ARGS,
                        "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert _messages(record) == [OLD_PRESET, OLD_PROTOCOL]
    cfg = C.load(run_dir / "config.toml")
    assert (cfg.preset, cfg.data.options["protocol"]) == ("beneath", "random")
    assert "preset beneath" in result.stderr


def test_the_old_names_on_the_command_line_are_one_warning_line_each(tmp_path):
    """As a user sees it: ``warning:`` lines on stderr, before the run starts (here it stops at a
    run directory that is a file)."""
    taken = tmp_path / "taken"
    taken.write_text("")
    result = subprocess.run([sys.executable, "-m", "mtlbench", "run", "--preset", "seed", "--set",
                             "data.options.protocol=seed", *TINY_ARGS, "--run-dir", str(taken)],
                            capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("warning:")] == [f"warning: {OLD_PRESET}",
                                                                      f"warning: {OLD_PROTOCOL}"], result.stderr
    assert result.returncode == 2 and lines[-1].startswith("error: run directory") and len(lines) == 3, result.stderr
