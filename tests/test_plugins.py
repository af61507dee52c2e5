"""Plugins are found through real ``*.dist-info/entry_points.txt`` metadata on ``sys.path``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from mtlbench import plugins
from tests.conftest import REPO


def make_distribution(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write an installed-distribution layout: modules plus a dist-info folder."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = ["[mtlbench.plugins]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        path = root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


GOOD = """
    from torch import nn
    from mtlbench.registry import LOSSES

    @LOSSES.register("plugged_l2", task="depth")
    def plugged_l2() -> nn.Module:
        '''Plain L2 on depth, from a test plugin.'''
        return nn.MSELoss()
"""

BROKEN = """
    from mtlbench.registry import MODELS

    @MODELS.register("half_registered")
    def half_registered():
        return None

    raise RuntimeError("this plugin is broken on purpose")
"""


@pytest.fixture()
def plugin_path(tmp_path, monkeypatch, isolated_registries):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    yield tmp_path
    for name in ("good_plugin", "broken_plugin", "func_plugin"):
        sys.modules.pop(name, None)


def test_a_module_plugin_registers_and_is_named_as_source(plugin_path, isolated_registries):
    make_distribution(plugin_path, "good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD})
    status = plugins.load_plugins()
    assert status["good-dist:good"].error is None
    entry = isolated_registries.LOSSES.entry("plugged_l2")
    assert entry.source == "plugin good (good-dist)"
    assert entry.summary == "Plain L2 on depth, from a test plugin."


def test_a_function_entry_point_is_called(plugin_path, isolated_registries):
    source = """
        def register():
            from mtlbench.registry import WEIGHTINGS
            WEIGHTINGS.add("from_function", lambda tasks, weights=None: None)
    """
    make_distribution(plugin_path, "func-dist", {"func": "func_plugin:register"}, {"func_plugin": source})
    plugins.load_plugins()
    assert "from_function" in isolated_registries.WEIGHTINGS


def test_a_broken_plugin_is_one_warning_and_the_rest_still_load(plugin_path, isolated_registries):
    make_distribution(plugin_path, "good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD})
    make_distribution(plugin_path, "broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    with pytest.warns(plugins.PluginWarning) as record:
        status = plugins.load_plugins()
    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    assert "'broken' from broken-dist failed to load" in messages[0]
    assert "this plugin is broken on purpose" in messages[0]
    assert status["broken-dist:broken"].error.startswith("RuntimeError")
    assert "plugged_l2" in isolated_registries.LOSSES
    # what the broken plugin registered before failing is rolled back
    assert "half_registered" not in isolated_registries.MODELS
    assert "mtinet" in isolated_registries.MODELS


@pytest.mark.parametrize("source, expected", [
    ("from mtlbench.api import INTERACTIONS\nINTERACTIONS.register('guided_attention')(lambda channels: None)",
     "interactions: 'guided_attention' is already registered (by built-in); choose another name"),
    ("from mtlbench.api import SCHEDULERS", "ImportError: cannot import name 'SCHEDULERS' from 'mtlbench.api'"),
    ("from mtlbench.api import registry\nregistry('schedulers')",
     "unknown registry 'schedulers'"),
])
def test_a_plugin_taking_a_name_or_a_registry_that_does_not_exist_is_one_warning(plugin_path, source, expected):
    make_distribution(plugin_path, "clash-dist", {"clash": "clash_plugin"}, {"clash_plugin": source})
    try:
        with pytest.warns(plugins.PluginWarning) as record:
            plugins.load_plugins()
    finally:
        sys.modules.pop("clash_plugin", None)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "'clash' from clash-dist failed to load" in messages[0], messages
    assert expected in messages[0], messages[0]
    from mtlbench.registry import INTERACTIONS

    assert INTERACTIONS.entry("guided_attention").source == "built-in"  # the host's entry is untouched


@pytest.mark.parametrize("declared, loads", [('"1"', True), ("1", True), ('"1.3"', True), ('"2"', True),
                                              ('"2.0"', True), ('"3"', False), ('"one"', False)])
def test_a_plugin_written_for_another_api_is_refused_with_one_warning(plugin_path, isolated_registries, declared,
                                                                      loads):
    from mtlbench.api import API_VERSION

    module = f"MTLBENCH_API = {declared}\n" + textwrap.dedent(GOOD)
    make_distribution(plugin_path, "versioned-dist", {"versioned": "versioned_plugin"}, {"versioned_plugin": module})
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            status = plugins.load_plugins()
        assert ("plugged_l2" in isolated_registries.LOSSES) == loads
        assert (status["versioned-dist:versioned"].error is None) == loads
        messages = [str(w.message) for w in record if issubclass(w.category, plugins.PluginWarning)]
        if loads:
            assert not messages
        else:
            (message,) = messages
            assert message.startswith("mtlbench plugin 'versioned' from versioned-dist is skipped: it ")
            if declared == '"3"':
                assert f"needs mtlbench API 3, and this mtlbench has API {API_VERSION}" in message
        assert "mtinet" in isolated_registries.MODELS  # the host keeps working
    finally:
        sys.modules.pop("versioned_plugin", None)


OLD_DATASET = """
    from mtlbench.registry import DATASETS

    @DATASETS.register("old_frames")
    def old_frames(root, size, max_depth, edge_thickness, progress=None):
        raise AssertionError("an API-1 dataset: never built")
"""


def test_an_api_1_plugin_keeps_what_did_not_change_and_loses_its_dataset_with_one_warning(plugin_path,
                                                                                         isolated_registries):
    module = 'MTLBENCH_API = "1"\n' + textwrap.dedent(GOOD) + textwrap.dedent(OLD_DATASET)
    make_distribution(plugin_path, "old-dist", {"old": "old_plugin"}, {"old_plugin": module})
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            status = plugins.load_plugins()
        assert status["old-dist:old"].error is None
        assert "plugged_l2" in isolated_registries.LOSSES  # losses did not change: it still loads
        assert "old_frames" not in isolated_registries.DATASETS
        (message,) = [str(w.message) for w in record if issubclass(w.category, plugins.PluginWarning)]
        assert 'declares MTLBENCH_API = "1": its datasets old_frames are skipped' in message
        assert "(root, size, progress, **options)" in message and 'MTLBENCH_API = "2"' in message
    finally:
        sys.modules.pop("old_plugin", None)


def test_two_distributions_may_use_the_same_entry_point_name(plugin_path, isolated_registries):
    a = GOOD.replace("plugged_l2", "loss_a")
    b = GOOD.replace("plugged_l2", "loss_b")
    make_distribution(plugin_path, "dist-a", {"plugin": "plugin_a"}, {"plugin_a": a})
    make_distribution(plugin_path, "dist-b", {"plugin": "plugin_b"}, {"plugin_b": b})
    try:
        plugins.load_plugins()
        assert "loss_a" in isolated_registries.LOSSES and "loss_b" in isolated_registries.LOSSES
    finally:
        sys.modules.pop("plugin_a", None), sys.modules.pop("plugin_b", None)


def test_disable_switch(plugin_path, isolated_registries, monkeypatch):
    make_distribution(plugin_path, "good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD})
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    plugins.load_plugins()
    assert "plugged_l2" not in isolated_registries.LOSSES


def test_the_example_plugin_in_the_repo_loads_through_its_metadata(plugin_path, isolated_registries):
    # the entry point as declared in plugins/mtlbench-gated-guidance/pyproject.toml
    pyproject = (REPO / "plugins/mtlbench-gated-guidance/pyproject.toml").read_text()
    assert 'gated_guidance = "mtlbench_gated_guidance:register"' in pyproject
    make_distribution(plugin_path, "mtlbench-gated-guidance",
                      {"gated_guidance": "mtlbench_gated_guidance:register"}, {})
    sys.path.insert(0, str(REPO / "plugins/mtlbench-gated-guidance/src"))
    try:
        plugins.load_plugins()
        import torch

        entry = isolated_registries.INTERACTIONS.entry("gated_attention")
        assert entry.source == "plugin gated_guidance (mtlbench-gated-guidance)"
        module = entry.obj(channels=8, dim=8, grid=2)
        target, source = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
        out = module(target, source)
        # gate starts at sigmoid(-2): the residual is 0.119 of the attended features
        expected = target + torch.sigmoid(torch.tensor(-2.0)) * module.attend(target, source)
        torch.testing.assert_close(out, expected)
    finally:
        sys.path.remove(str(REPO / "plugins/mtlbench-gated-guidance/src"))
        sys.modules.pop("mtlbench_gated_guidance", None)


def test_import_and_help_load_neither_torch_nor_plugins(tmp_path):
    make_distribution(tmp_path, "noisy-dist", {"noisy": "noisy_plugin"},
                      {"noisy_plugin": "raise SystemExit('plugin was imported')"})
    code = ("import sys, mtlbench, mtlbench.registry, mtlbench.cli\n"
            "from typer.testing import CliRunner\n"
            "r = CliRunner().invoke(mtlbench.cli.app, ['--help'])\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'noisy_plugin' not in sys.modules\n"
            "print('ok')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "flags", "header"), [
    ("interaction", ["--interaction", "demo"], ["interaction demo (hidden=32)", "guidance at stride 16: seg→depth"]),
    ("dataset", ["--data", "demo"], ["demo (24 frames drawn)"]),  # --frames: the dataset's own option
])
def test_a_scaffolded_plugin_installs_with_pip_passes_its_tests_and_trains(tmp_path, kind, flags, header):
    from tests.conftest import TINY_ARGS

    folder = tmp_path / "demo"
    made = subprocess.run([sys.executable, "-m", "mtlbench", "plugin", "new", "demo", "--kind", kind,
                           "--out", str(folder)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    site = tmp_path / "site"  # a real pip install (no network: setuptools of this environment builds it)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(folder)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "mtlbench", "list", f"{kind}s"], capture_output=True,
                            text=True, env={**env, "COLUMNS": "250"})  # one table line per entry
    assert "plugin demo (mtlbench-demo)" in listed.stdout, listed.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr
    run = subprocess.run([sys.executable, "-m", "mtlbench", "run", *flags, *TINY_ARGS,
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert all(line in run.stderr for line in header), run.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_plugin_new_refuses_bad_names_kinds_and_folders(tmp_path):
    from tests.conftest import assert_bad_input, invoke

    assert_bad_input(invoke("plugin", "new", "Bad-Name", "--out", tmp_path / "a"), "plugin name 'Bad-Name'")
    assert_bad_input(invoke("plugin", "new", "ok", "--kind", "optimizer", "--out", tmp_path / "b"),
                     "unknown kind 'optimizer'")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    assert_bad_input(invoke("plugin", "new", "ok", "--out", tmp_path / "c"), "is not an empty folder")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_api_module_is_light_and_exports_the_extension_points():
    code = ("import sys, mtlbench.api as api; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert api.API_VERSION.startswith(str(api.API_MAJOR) + '.'); "
            "assert api.INTERACTIONS.kind == 'interactions' and api.MultiTaskModel.__name__ == 'MultiTaskModel'; "
            "assert api.API_MAJOR == 2 and api.SERVED == (1, 2); "
            "assert api.compatible('1') is None and api.compatible(2) is None; "
            "assert 'needs mtlbench API 3' in api.compatible(3); "
            "assert set(api.__all__) >= {'GuidedAttention', 'LossWeighting', 'Option', 'WEIGHTINGS', 'Target', "
            "'CONTINUOUS', 'LABEL', 'VECTOR', 'RGBD_TARGETS', 'NORMALS_TARGET', 'MetricRecord', 'register_metric', "
            "'Metric'}; "
            "assert api.Target(api.VECTOR, 3) == api.NORMALS_TARGET and api.Metric.__name__ == 'Metric'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["interaction", "loss", "weighting", pytest.param("model", marks=pytest.mark.slow),
                                  "dataset"])
def test_every_plugin_kind_scaffolds_a_module_that_registers_and_passes_its_kit_test(kind, tmp_path,
                                                                                     isolated_registries):
    import runpy

    from mtlbench.registry import registering_as
    from mtlbench.scaffold import KINDS, new_plugin

    assert kind in KINDS
    name = f"demo_{kind}"
    folder = tmp_path / name
    new_plugin(name, kind, folder)
    test_file = folder / "tests" / f"test_mtlbench_{name}.py"
    check = {"interaction": "check_interaction", "loss": "check_loss", "weighting": "check_weighting",
             "model": "check_model", "dataset": "check_dataset"}[kind]
    assert f"    {check}(\"{name}\"" in test_file.read_text()  # one line: the kit's check of its kind
    listed = (folder / "README.md").read_text().split("mtlbench list ")[1].split()[0]
    assert listed in isolated_registries.REGISTRIES  # the README lists a registry that exists
    sys.path.insert(0, str(folder / "src"))
    try:
        module = __import__(f"mtlbench_{name}")
        assert module.MTLBENCH_API == "2"
        with registering_as(f"plugin {name} (mtlbench-demo-{kind})"):
            module.register()  # what the entry point runs
        entry = isolated_registries.registry("losses" if kind == "loss" else f"{kind}s").entry(name)
        assert entry.source == f"plugin {name} (mtlbench-demo-{kind})"
        tests = [f for n, f in runpy.run_path(str(test_file)).items() if n.startswith("test_")]
        assert len(tests) == 1
        tests[0]()  # raises AssertionError where the template broke its kind's contract
    finally:
        sys.path.remove(str(folder / "src"))
        sys.modules.pop(f"mtlbench_{name}", None)


def test_the_scaffolded_dataset_reads_npz_frames_from_its_root(tmp_path, isolated_registries):
    import numpy as np

    from mtlbench.errors import MtlbenchError
    from mtlbench.registry import registering_as
    from mtlbench.scaffold import new_plugin
    from mtlbench.testing import check_dataset

    new_plugin("frames", "dataset", tmp_path / "frames")
    sys.path.insert(0, str(tmp_path / "frames" / "src"))
    try:
        with registering_as("plugin frames"):
            __import__("mtlbench_frames").register()
        root = tmp_path / "data"
        root.mkdir()
        with pytest.raises(MtlbenchError, match=r"no \*.npz frames in .*data: each holds image, depth and seg"):
            check_dataset("frames", root=str(root))
        rng = np.random.default_rng(0)
        for i in range(4):  # 24×40 frames: resized to the asked 32×32
            seg = rng.integers(0, 3, (24, 40)).astype(np.uint8)
            seg[0, :4] = 255
            np.savez(root / f"{i:03d}.npz", image=rng.integers(0, 256, (24, 40, 3)).astype(np.uint8),
                     depth=rng.uniform(0.5, 9.5, (24, 40)).astype(np.float32), seg=seg)
        report = check_dataset("frames", root=str(root), size=32)
        assert report.notes["frames"] == "train 2, val 1, test 1"
        splits = isolated_registries.DATASETS.build("frames", str(root), 32, None)
        labels = set(splits.train.arrays.seg.unique().tolist()) | set(splits.test.arrays.seg.unique().tolist())
        assert labels <= {0, 1, 2, 255} and 255 in labels  # nearest resizing invents no label, keeps the ignored
    finally:
        sys.path.remove(str(tmp_path / "frames" / "src"))
        sys.modules.pop("mtlbench_frames", None)
