"""Config files: the options tables written out and read back, and files of earlier versions."""

from __future__ import annotations

import pytest

from mtlbench import config as C
from mtlbench import settings as S
from mtlbench.engine.build import resolve
from mtlbench.errors import MtlbenchError
from tests.conftest import tiny_config

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
