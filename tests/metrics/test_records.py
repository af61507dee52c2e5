"""Metric records: every computed key has one, reports follow them, lookup errors help."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from mtlbench import config as C
from mtlbench.config import EvalConfig
from mtlbench.errors import MtlbenchError
from mtlbench.metrics import DepthMetrics, NormalsMetrics, SegMetrics, records
from mtlbench.metrics.records import MetricRecord, key_metric, lookup, records_for, register
from mtlbench.registry import TASKS
from mtlbench.report import results as R
from mtlbench.report.console import metrics_table
from mtlbench.tasks import DatasetInfo, build_tasks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fresh_records(monkeypatch):
    """Registrations made by the test are dropped afterwards."""
    monkeypatch.setattr(records, "_RECORDS", dict(records._RECORDS))
    return records


def _text(table) -> str:
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table)
    return console.export_text()


def _batch() -> dict[str, torch.Tensor]:
    """Two 32×32 images: a depth step (so that the boundary errors exist), three classes, an edge
    line, normals of two planes with an invalid band."""
    depth = torch.full((2, 1, 32, 32), 2.0)
    depth[..., 16:] = 5.0
    seg = torch.zeros(2, 32, 32, dtype=torch.long)
    seg[:, 10:, :] = 1
    seg[:, 20:, 20:] = 2
    edge = torch.zeros(2, 1, 32, 32)
    edge[..., 4:28, 16] = 1.0
    normals = torch.zeros(2, 3, 32, 32)
    normals[:, 2, :16] = 1.0
    normals[:, 1, 16:30] = 1.0
    return {"depth": depth, "seg": seg, "edge": edge, "normals": normals}


def _predictions(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    depth = batch["depth"] * 1.1
    seg = batch["seg"].clone()
    seg[:, :4] = 2  # some errors, every class predicted
    edge = batch["edge"] * 0.8 + 0.1
    normals = batch["normals"] + torch.tensor([0.3, 0.0, 0.1]).view(1, 3, 1, 1)
    return {"depth": depth, "seg": seg, "edge": edge, "normals": normals}


# the built-in tasks whose metrics the test below builds through their task (normals once registered)
BUILT_IN = tuple(t for t in ("depth", "seg", "edge", "normals") if t in TASKS.names())


# option combinations that change the set of keys (boundaries) or could (crop, NMS, class names)
OPTIONS = [EvalConfig(boundaries=b, eigen_crop=c, edge_nms=n) for b, c, n in itertools.product((True, False), repeat=3)]


@pytest.mark.parametrize("class_names", [("wall", "floor", "bed"), ()])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"bnd{int(o.boundaries)}crop{int(o.eigen_crop)}"
                                                           f"nms{int(o.edge_nms)}")
def test_every_computed_key_has_a_record(options, class_names):
    info = DatasetInfo(num_classes=3, max_depth=10.0, class_names=class_names)
    tasks = build_tasks(BUILT_IN, info)
    batch = _batch()
    pred = _predictions(batch)
    for name, task in tasks.items():
        m = task.metrics(options)
        m.update(pred[name], batch)
        got = m.compute()
        missing = [k for k in set(got) | set(m.names) if records.find(name, k) is None]
        assert missing == [], (name, missing)
        assert set(got) <= set(m.names)
    # the batch really produced the optional keys, so they were checked above
    depth = tasks["depth"].metrics(options)
    depth.update(pred["depth"], batch)
    assert ("dbe_acc" in depth.compute()) == options.boundaries
    seg = tasks["seg"].metrics(options)
    seg.update(pred["seg"], batch)
    assert {k for k in seg.compute() if k.startswith("iou/")} == {f"iou/{c}" for c in class_names or ("0", "1", "2")}


def test_every_normals_key_has_a_record():
    # also where the normals task is not registered: the metric class and its records alone
    batch = _batch()
    m = NormalsMetrics()
    m.update(_predictions(batch)["normals"], batch)
    got = m.compute()
    assert set(got) == set(m.names)
    assert [k for k in got if records.find("normals", k) is None] == []
    assert key_metric("normals") == "mean" and R.delta_keys(["normals"], "mti") == ["normals/mean"]


def test_directions_agree_with_the_definitions():
    lower = ["rmse", "mae", "abs_rel", "sq_rel", "rmse_log", "log10", "silog", "rmse_img", "abs_rel_img",
             "mae_norm", "rmse_norm", "dbe_acc", "dbe_comp"]
    higher = ["delta1", "delta2", "delta3", "delta1_img", "delta3_img", "delta1_beneath"]
    assert [lookup("depth", k).higher_is_better for k in lower] == [False] * len(lower)
    assert [lookup("depth", k).higher_is_better for k in higher] == [True] * len(higher)
    assert [lookup("seg", k).higher_is_better for k in ("miou", "pixel_acc", "mean_acc", "fwiou", "iou/wall")] == [
        True] * 5
    assert [lookup("edge", k).higher_is_better for k in ("ods", "ois", "ap", "ods_precision", "ods_recall")] == [
        True] * 5
    assert lookup("edge", "ods_threshold").higher_is_better is None  # an operating point, not a score
    assert (key_metric("depth"), key_metric("seg"), key_metric("edge")) == ("rmse", "miou", "ods")
    # the metric classes read the same records
    assert DepthMetrics(boundaries=True).higher_is_better == {"delta1", "delta2", "delta3", "delta1_img",
                                                              "delta2_img", "delta3_img"}
    seg = SegMetrics(2, ("wall", "floor"))
    assert seg.higher_is_better == {"pixel_acc", "mean_acc", "miou", "fwiou", "iou/wall", "iou/floor"}
    tasks = build_tasks(("depth", "seg", "edge"), DatasetInfo())
    assert [(t.key_metric, t.higher_is_better) for t in tasks.values()] == [("rmse", False), ("miou", True),
                                                                          ("ods", True)]


def test_per_image_and_per_class_records():
    r = lookup("depth", "silog_img")
    assert (r.label, r.header, r.higher_is_better, r.key, r.in_delta_all) == ("SILog (per image)", "SILog/img",
                                                                            False, False, False)
    iou = lookup("seg", "iou/dining table")
    assert (iou.name, iou.label, iou.header, iou.percent, iou.order) == ("iou/dining table", "IoU dining table",
                                                                        "IoU dining table %", True, None)
    with pytest.raises(MtlbenchError, match="seg has no metric 'iou/'"):
        lookup("seg", "iou/")


def test_records_for_is_in_console_order():
    names = [r.name for r in records_for("seg")]
    assert names == ["miou", "pixel_acc", "mean_acc", "fwiou", "iou/<class>"]
    assert [r.name for r in records_for("edge")][:4] == ["ods", "ois", "ap", "ods_threshold"]
    assert [r.name for r in records_for("depth")][:3] == ["rmse", "mae", "abs_rel"]
    assert records_for("curvature") == ()


def test_lookup_says_what_was_meant():
    with pytest.raises(MtlbenchError) as exc:
        lookup("seg", "mIoU")
    assert str(exc.value).startswith("seg has no metric 'mIoU'; did you mean miou")
    assert "(seg metrics: miou, pixel_acc, mean_acc, fwiou, iou/<class>)" in str(exc.value)
    with pytest.raises(MtlbenchError, match=r"did you mean rmse_img\b"):
        lookup("depth", "rmse_im")
    with pytest.raises(MtlbenchError) as exc:
        lookup("edge", "zzz")
    assert "did you mean" not in str(exc.value) and "edge metrics: ods, ois" in str(exc.value)
    with pytest.raises(MtlbenchError, match="task 'curvature' has no metric records"):
        lookup("curvature", "mean_curvature")
    with pytest.raises(MtlbenchError, match="task 'curvature' has no key metric"):
        key_metric("curvature")


def test_register_refuses_duplicates_and_inconsistent_records(fresh_records):
    with pytest.raises(MtlbenchError, match="depth/rmse is registered already"):
        register(MetricRecord("rmse", "depth", "RMSE", "RMSE", False))
    with pytest.raises(MtlbenchError, match="has a key metric already \\(miou\\)"):
        register(MetricRecord("dice", "seg", "Dice", "Dice", True, key=True))
    with pytest.raises(MtlbenchError, match="with a direction"):
        register(MetricRecord("curv", "curvature", "curv", "curv", None, key=True))
    with pytest.raises(MtlbenchError, match="prefix/<slot>"):
        register(MetricRecord("iou<class>", "seg", "IoU", "IoU", True))
    # a plugin task's records: its key metric, lookup and Δm follow
    register(MetricRecord("mean_curvature", "curvature", "mean curvature 1/m", "mean curv.", False, unit="1/m",
                          key=True, in_delta_all=True, order=0))
    assert key_metric("curvature") == "mean_curvature"
    assert R.delta_keys(["curvature"], "mti") == ["curvature/mean_curvature"]
    assert R.delta_m({"curvature/mean_curvature": 9.0}, {"curvature/mean_curvature": 10.0}, ["curvature"], "mti") == (
        pytest.approx(10.0))


class TightDepthMetrics(DepthMetrics):
    """Depth metrics plus one key: the fraction of valid pixels with max(p/g, g/p) < 1.05."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.names = self.names + ("delta_tight",)

    def reset(self):
        super().reset()
        self._tight = [0, 0]

    def update(self, pred, batch):
        super().update(pred, batch)
        g = batch["depth"].float().reshape(pred.shape)
        p = pred.float().clamp(self.min_depth, self.cap)
        valid = self.valid_mask(g)
        ratio = torch.maximum(p / g, g / p)[valid]
        self._tight[0] += int((ratio < 1.05).sum())
        self._tight[1] += int(valid.sum())

    def compute(self):
        result = super().compute()
        if self._tight[1]:
            result["delta_tight"] = self._tight[0] / self._tight[1]
        return result


TIGHT = MetricRecord("delta_tight", "depth", "δ<1.05", "δ1.05", True, percent=True, in_delta_all=True, order=17)


def _tight_values(pred: list[float], gt: list[float]) -> dict[str, float]:
    m = TightDepthMetrics(boundaries=False)
    m.update(torch.tensor([[[pred]]]), {"depth": torch.tensor([[[gt]]])})
    return m.compute()


def test_a_new_metric_needs_only_its_class_and_its_record(fresh_records, tmp_path):
    # ratios 1.02, 1.1, 1.0, 1.5: two of four within 1.05
    values = _tight_values([2.04, 2.2, 4.0, 6.0], [2.0, 2.0, 4.0, 4.0])
    assert values["delta_tight"] == 0.5
    # without its record the console still shows it, under its raw key, and no report ranks it
    assert "delta_tight" in _text(metrics_table({"depth": values}, "t"))
    assert "delta_tight" not in TightDepthMetrics(boundaries=False).higher_is_better
    assert "depth/delta_tight" not in R.delta_keys(["depth"], "all")

    register(TIGHT)

    # the metric class's direction
    assert "delta_tight" in TightDepthMetrics(boundaries=False).higher_is_better
    # the console table: its label, last (order 17), the raw key gone
    text = _text(metrics_table({"depth": values}, "t"))
    assert "delta_tight" not in text
    last = [c.strip() for c in [line for line in text.splitlines() if "│" in line][-1].split("│")]
    assert last[2:4] == ["δ<1.05", "0.5000"]
    # the result tables: a column with header, unit, arrow and percent
    assert "depth/delta_tight" in R.column_records()
    cfg = C.from_dict({"tasks": ["depth"]}, C.RunConfig())
    runs = []
    for name, tight in (("multi", 0.55), ("single", 0.5)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.toml").write_text(C.dumps(cfg))
        metrics = {"depth": {**values, "delta_tight": tight}}
        (d / "metrics.json").write_text(json.dumps({"test": metrics, "tasks": ["depth"]}))
        runs.append(R.load_run(d))
    (table,) = R.comparison_tables(runs[:1], columns=["depth/rmse", "depth/delta_tight"], delta=())
    assert table.columns[2:4] == ["RMSE m ↓", "δ1.05 % ↑"] and table.rows[0][3] == "55.00"
    # Δm "all": eleven depth metrics now, the new one 10 % better, all others equal
    keys = R.delta_keys(["depth"], "all")
    assert len(keys) == 11 and keys[-1] == "depth/delta_tight"
    multi, single = R.flat(runs[0].split("test")), R.flat(runs[1].split("test"))
    assert R.delta_m(multi, single, ["depth"], "all") == pytest.approx(100 * 0.1 / 11)


def test_console_table_labels_order_and_fallbacks():
    metrics = {"depth": {"loss": 0.3, "mae": 0.25, "rmse": 0.5, "mae_img": 0.2},
               "edge": {"ods": 0.7, "ods_precision": 0.6},
               "curvature": {"mean_curvature": 12.0, "per/x": 1.0},
               "total": {"loss": 1.0}}
    text = _text(metrics_table(metrics, "t"))
    lines = [line.split("│") for line in text.splitlines() if "│" in line]
    shown = [(cells[2].strip(), cells[3].strip()) for cells in lines if cells[2].strip()]
    # records' labels in their order; per-image MAE and ODS precision have records without a console place;
    # a task without records shows its raw keys
    assert shown == [("RMSE m", "0.5000"), ("MAE m", "0.2500"), ("odsF", "0.7000"), ("mean_curvature", "12.0000")]


def test_records_and_compare_import_no_torch(tmp_path):
    cfg = C.from_dict({"tasks": ["seg"]}, C.RunConfig())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(C.dumps(cfg))
    (run / "metrics.json").write_text(json.dumps({"test": {"seg": {"miou": 0.5}}, "tasks": ["seg"]}))
    code = ("import sys\n"
            "import mtlbench.metrics.records, mtlbench.report.results, mtlbench.report.console\n"
            "from typer.testing import CliRunner\n"
            "from mtlbench.cli import app\n"
            f"r = CliRunner().invoke(app, ['compare', {str(run)!r}, '--format', 'csv'])\n"
            "assert r.exit_code == 0, repr(r.exception) + r.output\n"
            "assert 'mIoU % ↑' in r.output, r.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "MTLBENCH_DISABLE_PLUGINS": "1"})
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.strip().endswith("ok")
