"""Config files: the options tables written out and read back, and files of earlier versions."""

from __future__ import annotations

import pytest

from mtlbench import config as C
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
