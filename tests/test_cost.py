from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mtlbench import cost as C
from mtlbench.errors import MtlbenchError, UnknownNameError
from mtlbench.models.backbones import build_backbone
from mtlbench.registry import MODELS
from mtlbench.report import cost as T
from mtlbench.report import tables
from mtlbench.tasks import DatasetInfo, build_tasks
from tests.conftest import invoke as cli

TINY = ["--backbone", "test_resnet", "--size", "64", "--repeats", "1"]


def test_parameters_match_the_layer_formulas():
    conv = nn.Conv2d(3, 8, 3)
    assert C.count_parameters(conv) == 3 * 8 * 3 * 3 + 8
    lin = nn.Linear(10, 7)
    shared = nn.Sequential(lin, nn.ReLU(), nn.Linear(7, 10), lin)  # a shared layer counts once
    assert C.count_parameters(shared) == (10 * 7 + 7) + (7 * 10 + 10)


@pytest.mark.parametrize("cin, cout, k, stride, size", [(3, 8, 3, 1, 16), (4, 6, 5, 2, 20), (2, 3, 1, 1, 7)])
def test_conv_flops_are_two_macs_per_output(cin, cout, k, stride, size):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    x = torch.randn(2, cin, size, size)
    out = (size + 2 * (k // 2) - k) // stride + 1
    assert C.count_flops(conv, x) == 2 * cin * cout * k * k * out * out * 2


def test_linear_flops_and_per_image_costs():
    lin = nn.Linear(10, 7)
    x = torch.randn(4, 10)
    assert C.count_flops(lin, x) == 2 * 10 * 7 * 4
    cost = C.measure(lin, "linear", x, repeats=1, warmup=0)
    assert cost.flops == 2 * 10 * 7  # per image
    assert cost.params == 77
    assert cost.act_bytes == 7 * 4  # the output, per image, fp32


def test_activation_bytes_are_the_tensors_kept_for_backward():
    # conv saves its input (the model input, excluded) and weight (excluded); ReLU saves its
    # output, which the second conv saves as its input: one 8×16×16 map; plus the final output
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(8, 5, 3, padding=1, bias=False))
    x = torch.randn(2, 3, 16, 16)
    assert C.saved_activation_bytes(net, x) == 2 * (8 + 5) * 16 * 16 * 4
    assert C.peak_activation_bytes(net, x) == C.saved_activation_bytes(net, x)  # the CPU measure
    x64 = x.double()
    assert C.saved_activation_bytes(net.double(), x64) == 2 * (8 + 5) * 16 * 16 * 8


def test_activation_bytes_count_a_storage_once():
    class TwoHeads(nn.Module):
        def forward(self, x):
            y = torch.sigmoid(x * 2.0)  # mul saves nothing of x (a constant scale); sigmoid saves y
            return {"a": y, "b": [y[:, :1]]}  # outputs share y's storage

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert C.saved_activation_bytes(TwoHeads(), x) == 2 * 3 * 8 * 8 * 4


def test_latency_is_the_median_after_warm_up():
    ticks = itertools.chain([0.0, 5.0], [10.0, 11.0], [20.0, 23.0], [30.0, 30.5], [40.0, 49.0])
    calls = []
    model = lambda x: calls.append(1)  # noqa: E731
    assert C.median_latency_s(model, torch.zeros(1), repeats=5, warmup=3, clock=lambda: next(ticks)) == 3.0
    assert len(calls) == 8


def test_report_sets_the_multi_task_model_against_its_single_task_models():
    r = C.cost_report("hps", "depth,seg", backbone="test_resnet", size=64, batch_size=2, repeats=1, width=16)
    assert r.tasks == ("depth", "seg") and [c.label for c in r.singles] == ["hps (depth)", "hps (seg)"]
    torch.manual_seed(0)
    direct = MODELS.build("hps", build_tasks(("depth", "seg"), DatasetInfo()), build_backbone("test_resnet", 16))
    assert r.main.params == sum(p.numel() for p in direct.parameters())
    s = r.summed
    assert s.params == sum(c.params for c in r.singles) and s.flops == sum(c.flops for c in r.singles)
    # one shared backbone instead of two: fewer parameters and FLOPs than the sum
    backbone = sum(p.numel() for p in build_backbone("test_resnet", 16).parameters())
    assert r.main.params == s.params - backbone
    assert r.main.flops < s.flops
    assert all(c.act_bytes > 0 and c.latency_s > 0 for c in [r.main, *r.singles])
    tables = T.cost_tables(r)
    assert len(tables) == 2
    ratio = tables[1].rows[-1]
    assert ratio[0] == "ratio multi / sum" and float(ratio[1]) == pytest.approx(r.main.params / s.params, abs=1e-3)


def test_one_task_gives_one_table():
    r = C.cost_report("smp_fpn", ["seg"], backbone="test_resnet", size=64, repeats=1)
    assert r.singles == [] and r.summed is None
    assert len(T.cost_tables(r)) == 1


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"model": "nope", "tasks": "depth"}, UnknownNameError, "unknown model 'nope'"),
    ({"model": "hps", "tasks": "depht"}, UnknownNameError, "unknown task 'depht'"),
    ({"model": "hps", "tasks": "depth", "backbone": "resnet5O"}, UnknownNameError, "unknown backbone"),
    ({"model": "hps", "tasks": "depth", "size": 48}, MtlbenchError, "does not fit backbone test_resnet"),
    ({"model": "smp_unet", "tasks": "depth,seg"}, MtlbenchError, "single-task baseline"),
    ({"model": "smp_unet", "tasks": "edge"}, MtlbenchError, "cannot serve task edge"),
    ({"model": "hps", "tasks": "depth", "batch_size": 0}, MtlbenchError, "batch size must be at least 1"),
])
def test_bad_input_is_one_line_error(kwargs, error, fragment):
    kwargs = {"backbone": "test_resnet", "size": 64, "repeats": 1, **kwargs}
    with pytest.raises(error) as info:
        C.cost_report(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_markdown_and_atomic_write(tmp_path):
    table = tables.TableData("title | x", "caption", ["model", "n"], [["a", "1"], ["b", "2"]], sections=[1])
    text = tables.to_markdown([table])
    assert "**title \\| x**" in text
    assert "| model | n |\n|---|---:|\n| a | 1 |\n| b | 2 |" in text
    path = tmp_path / "cost.md"
    path.write_text("old")
    tables.write_atomic(path, text)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["cost.md"]  # no temporary file left
    with pytest.raises(MtlbenchError, match="does not exist"):
        tables.write_atomic(tmp_path / "missing" / "cost.md", text)


def test_a_failed_markdown_write_is_one_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    import errno

    from mtlbench import fileio

    path = tmp_path / "cost.md"
    path.write_text("old")
    real = fileio.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(MtlbenchError, match="cannot be written: No space left on device"):
        tables.write_atomic(path, "new")
    monkeypatch.setattr(fileio.os, "fsync", real)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["cost.md"]


def invoke(*args: str):
    return cli("cost", *args)


def test_cli_prints_both_tables_and_writes_markdown(tmp_path):
    md = tmp_path / "cost.md"
    result = invoke("--model", "hps", "--task", "depth,seg", *TINY, "--markdown", str(md))
    assert result.exit_code == 0, result.output
    for fragment in ("cost of hps on depth,seg", "hps (depth)", "hps (seg)", "sum of singles", "ratio multi / sum"):
        assert fragment in result.stdout, fragment
    text = md.read_text()
    assert text.count("| model | params M | GFLOP/img | act. MiB/img | ms/img |") == 2
    assert "| ratio multi / sum |" in text
    assert f"written: {md}" in result.stderr


@pytest.mark.parametrize("model", ["mtinet", "mtinet_eccv20", "padnet", "cross_stitch", "mtan", "fcn", "refinenet",
                                   "papnet", "context"])
def test_cli_costs_every_multi_task_model(model):
    result = invoke("--model", model, "--task", "depth,seg", *TINY)
    assert result.exit_code == 0, result.output
    assert f"{model} (depth,seg)" in result.stdout and "ratio multi / sum" in result.stdout


def test_cli_single_task_model(tmp_path):
    result = invoke("--model", "smp_unet", "--task", "depth", *TINY)
    assert result.exit_code == 0, result.output
    assert "cost of smp_unet on depth" in result.stdout and "ratio" not in result.stdout
    assert "one task: no multi-task comparison" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "hps", "--task", "depth", "--backbone", "test_resnet", "--size", "50"], "does not fit backbone"),
    (["--model", "smp_fpn", "--task", "depth,seg", "--backbone", "test_resnet", "--size", "64"],
     "model smp_fpn is a single-task baseline: pass one of depth, seg"),
    (["--model", "hps", "--task", "depth", "--markdown", "/nonexistent-dir/x.md"], "does not exist"),
    (["--model", "hps", "--task", "depth", "--backbone", "test_resnet", "--size", "64", "--device", "foo"],
     "'foo' is not a device"),
])
def test_cli_bad_input_is_one_line_exit_2(args, fragment):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert result.stdout == ""


def _params(stdout: str, label: str) -> float:
    """The params M cell of ``label``'s row in the rich table."""
    row = next(line for line in stdout.splitlines() if label in line)
    return float([c.strip() for c in row.split("│") if c.strip()][1])


def test_cli_costs_a_configuration_its_model_options_and_interaction(tmp_path):
    plain = invoke("--model", "refinenet", "--task", "depth,seg", *TINY)
    light = invoke("--model", "refinenet", "--task", "depth,seg", *TINY, "--set", "model.options.light=true")
    assert plain.exit_code == light.exit_code == 0, plain.output + light.output
    # light-weight RefineNet replaces the 3×3 convolutions of its blocks by 1×1: fewer parameters
    assert _params(light.stdout, "refinenet (depth,seg)") < _params(plain.stdout, "refinenet (depth,seg)")
    config = tmp_path / "c.toml"
    config.write_text('tasks = ["depth", "seg"]\n[model]\nname = "mtinet"\n[model.options]\nguidance = ["seg->depth"]\n'
                      '[model.interaction]\ndim = 32\n')
    small = invoke("--config", str(config), *TINY)
    wide = invoke("--config", str(config), *TINY, "--set", "model.interaction.dim=64")
    assert small.exit_code == wide.exit_code == 0, small.output + wide.output
    assert _params(small.stdout, "mtinet (depth,seg)") < _params(wide.stdout, "mtinet (depth,seg)")
    bad = invoke("--config", str(config), *TINY, "--interaction", "film")
    assert bad.exit_code == 2 and "interaction film takes no option 'dim'" in bad.stderr, bad.output
