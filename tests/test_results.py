"""Result tables: protocols kept apart, published rows with their sources, Δm, output formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from mtlbench import config as C
from mtlbench.errors import MtlbenchError
from mtlbench.report import results as R
from mtlbench.report.tables import TableData, latex_escape, render, to_latex

SCORED = {"scored_size": [425, 560]}  # as a run of the NYUD protocols records its test split


def _run_dir(tmp_path, name, tasks, metrics, data=None, scored=SCORED):
    cfg = C.from_dict({"tasks": tasks, "data": data or {}}, C.RunConfig())
    d = tmp_path / name
    d.mkdir()
    (d / "config.toml").write_text(C.dumps(cfg))
    (d / "metrics.json").write_text(json.dumps({"test": metrics, "tasks": tasks, "model": cfg.model.name,
                                                "eval": {"test": scored}}))
    return d


MULTI = {"depth": {"rmse": 0.5, "abs_rel": 0.2}, "seg": {"miou": 0.44, "pixel_acc": 0.7}, "edge": {"ods": 0.7}}
SINGLE = {"depth": {"rmse": 0.55, "abs_rel": 0.25}, "seg": {"miou": 0.40, "pixel_acc": 0.7}, "edge": {"ods": 0.7}}


def test_delta_m_mti_hand_value():
    multi, single = R.flat(MULTI), R.flat(SINGLE)
    # depth: −(0.5 − 0.55)/0.55 = +1/11; seg: (0.44 − 0.40)/0.40 = +0.1; edge: 0 → mean × 100
    expected = 100 * (1 / 11 + 0.1 + 0.0) / 3
    assert R.delta_m(multi, single, ["depth", "seg", "edge"], "mti") == pytest.approx(expected)
    # a task's reference missing: no value rather than a partial one
    assert R.delta_m(multi, {k: v for k, v in single.items() if not k.startswith("edge")},
                     ["depth", "seg", "edge"], "mti") is None
    with pytest.raises(MtlbenchError, match="mti or all"):
        R.delta_m(multi, single, ["depth"], "mean")


def test_delta_m_all_metrics_is_a_flat_mean():
    keys = R.delta_keys(["depth", "seg"], "all")
    # the ten pooled depth metrics and the four seg summaries; no per-image, normalised or DBE one
    assert sorted(keys) == sorted(
        [f"depth/{k}" for k in ("rmse", "mae", "abs_rel", "sq_rel", "rmse_log", "log10", "silog", "delta1",
                                "delta2", "delta3")] + [f"seg/{k}" for k in ("miou", "pixel_acc", "mean_acc", "fwiou")])
    single = {k: 1.0 for k in keys}
    multi = dict(single)
    multi["depth/rmse"] = 0.8  # 20 % better (lower is better)
    multi["seg/miou"] = 1.1  # 10 % better
    multi["depth/delta1"] = 0.9  # 10 % worse (higher is better)
    assert R.delta_m(multi, single, ["depth", "seg"], "all") == pytest.approx(100 * (0.2 + 0.1 - 0.1) / 14)
    # the one-metric variant sees only rmse and miou
    assert R.delta_m(multi, single, ["depth", "seg"], "mti") == pytest.approx(100 * (0.2 + 0.1) / 2)


def test_published_rows_carry_sources_and_protocols():
    rows = R.published_rows()
    assert rows and all(r["source"] and r["protocol"] in R.PROTOCOLS for r in rows)
    mti = next(r for r in rows if r["model"] == "MTI-Net")
    assert mti["protocol"] == "nyud-mt" and mti["metrics"] == {"seg/miou": pytest.approx(0.49),
                                                                "depth/rmse": pytest.approx(0.529)}
    beneath = [r for r in rows if r["protocol"] == "beneath"]
    assert {k for r in beneath for k in r["metrics"]} >= {"depth/mae_norm", "depth/rmse_norm", "seg/pixel_acc",
                                                          "depth/delta1_beneath"}


def test_protocol_of_a_run():
    def proto(name, **options):
        return R.run_protocol(C.from_dict({"data": {"name": name, "options": options}}, C.RunConfig()))

    assert proto("synthrooms") is None
    assert proto("nyuv2", protocol="random") == "beneath"
    assert proto("nyuv2", protocol="official") == "nyud-mt"
    assert proto("nyuv2", protocol="official", classes=13) == "nyuv2-13-mtan"
    assert proto("nyuv2", protocol="official", classes=894) is None
    assert proto("nyuv2", protocol="random", classes=13) is None  # no paper used it
    assert proto("nyud_mt") == "nyud-mt"


def test_the_random_split_with_40_classes_uncropped_is_the_protocol_of_beneath_the_surface(tmp_path):
    cfg = C.from_dict({"data": {"name": "nyuv2", "options": {"protocol": "random", "classes": 40}},
                       "eval": {"eigen_crop": False}}, C.RunConfig())
    assert R.run_protocol(cfg) == "beneath"
    assert R.run_setting(cfg).startswith("nyuv2, random 80/10/10, 40 classes")
    # a run directory of an earlier version, which named the split "seed", is matched alike
    old = _run_dir(tmp_path, "old", ["depth"], {"depth": {"rmse": 0.6}}, {"name": "nyuv2"})
    text = (old / "config.toml").read_text().replace("[data.options]\n", "") + '\n[data.options]\nprotocol = "seed"\n'
    (old / "config.toml").write_text(text)
    with pytest.warns(C.ConfigWarning) as record:
        run = R.load_run(old)
    assert [str(w.message) for w in record] == ['data.options.protocol "seed" is now "random"']
    assert run.config.data.options["protocol"] == "random" and R.run_protocol(run.config) == "beneath"


def test_tables_keep_protocols_apart_and_compute_delta(tmp_path):
    official = {"name": "nyuv2", "options": {"protocol": "official"}}
    multi = _run_dir(tmp_path, "multi", ["depth", "seg", "edge"], MULTI, official)
    singles = [_run_dir(tmp_path, t, [t], {t: SINGLE[t]}, official) for t in ("depth", "seg", "edge")]
    synth = _run_dir(tmp_path, "synth", ["depth", "seg", "edge"], MULTI)
    runs = [R.load_run(p) for p in [multi, synth]]
    tables = R.comparison_tables(runs, baselines=[R.load_run(p) for p in singles], delta=("mti", "all"))
    assert len(tables) == 2
    nyud, syn = tables
    assert "nyud-mt" in nyud.title and "no published protocol" in syn.title
    # the run first, then the published rows of its protocol (a rule between), each with its source
    assert nyud.rows[0][0].startswith("mtinet") and nyud.sections == [1]
    published = {row[0] for row in nyud.rows[1:]}
    assert {"MTI-Net", "PAD-Net", "PAP-Net"} <= published and "ZoeDepth" not in published
    assert "InvPT" not in published  # a four-task row: the three-task table leaves it out
    assert all(row[-1] for row in nyud.rows)
    assert "Runs evaluated at" not in nyud.caption  # scored at the protocol's 425×560 like the published rows
    assert "APPROXIMATE odsF" in nyud.caption  # fast matching: labelled
    # Δm (MTI-Net) of the run: +6.36 %; the published rows have none
    col = nyud.columns.index(R.DELTA_LABEL["mti"] + " ↑")
    assert nyud.rows[0][col] == f"{100 * (1 / 11 + 0.1) / 3:+.2f}"
    assert nyud.raw[0]["delta_m_mti"] == pytest.approx(100 * (1 / 11 + 0.1) / 3)
    assert all(row[col] == "–" for row in nyud.rows[1:])
    # mIoU in %, RMSE in metres
    assert nyud.rows[0][nyud.columns.index("mIoU % ↑")] == "44.00"
    assert nyud.rows[0][nyud.columns.index("RMSE m ↓")] == "0.5000"
    # the synthrooms run has no single-task references of its protocol: no Δm
    assert syn.rows[0][syn.columns.index(R.DELTA_LABEL["mti"] + " ↑")] == "–"
    assert len(syn.rows) == 1


def test_other_protocols_only_on_request(tmp_path):
    run = R.load_run(_run_dir(tmp_path, "a", ["depth"], {"depth": {"rmse": 0.6}},
                              {"name": "nyuv2", "options": {"protocol": "random"}}))
    assert [t.title.split(":")[0] for t in R.comparison_tables([run])] == ["test metrics, protocol beneath"]
    more = R.comparison_tables([run], other_protocols=True)
    assert len(more) == 1 + len(R.PROTOCOLS) - 1
    eigen = next(t for t in more if "eigen-depth" in t.title)
    assert {row[0] for row in eigen.rows} == {"Depth Anything (metric, fine-tuned on NYUv2)", "ZoeDepth"}


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(MtlbenchError, match="not an mtlbench run directory"):
        R.load_run(tmp_path)
    d = _run_dir(tmp_path, "r", ["depth"], {"depth": {"rmse": 0.6}})
    with pytest.raises(MtlbenchError, match="has no val split"):
        R.load_run(d).split("val")
    (d / "metrics.json").write_text("{")
    with pytest.raises(MtlbenchError, match="not valid JSON"):
        R.load_run(d)
    (d / "metrics.json").unlink()
    with pytest.raises(MtlbenchError, match="mtlbench eval"):
        R.load_run(d)
    with pytest.raises(MtlbenchError, match="unknown column"):
        R.comparison_tables([], columns=["depth/nope"])


def test_per_class_table(tmp_path):
    a = _run_dir(tmp_path, "a", ["seg"], {"seg": {"miou": 0.5, "iou/wall": 0.75, "iou/floor": 0.25}})
    b = _run_dir(tmp_path, "b", ["seg"], {"seg": {"miou": 0.5, "iou/wall": 0.5}})
    t = R.per_class_table([R.load_run(a), R.load_run(b)])
    assert t.rows == [["wall", "75.00", "50.00"], ["floor", "25.00", "–"]]


TABLE = TableData("t & 1", "50% of δ", ["model", "RMSE m ↓"], [["a_b", "0.5"], ["c", "0.25"]], [1],
                  [{"model": "a_b", "rmse": 0.5}, {"model": "c", "rmse": 0.25}])


def test_formats_round_trip():
    rows = list(csv.reader(io.StringIO(render([TABLE], "csv"))))
    assert rows == [["# t & 1"], ["# 50% of δ"], ["model", "RMSE m ↓"], ["a_b", "0.5"], ["c", "0.25"]]
    data = json.loads(render([TABLE], "json"))
    assert data[0]["rows"] == TABLE.rows and data[0]["values"][1]["rmse"] == 0.25
    md = render([TABLE], "md")
    assert "| a_b | 0.5 |" in md and "|---|---:|" in md
    tex = to_latex([TABLE])
    assert r"a\_b & 0.5 \\" in tex and r"t \& 1" in tex and r"50\% of $\delta$" in tex
    assert tex.count(r"\midrule") == 2  # under the header, and the section rule before row 1
    assert latex_escape("x^2 ~ {y}") == r"x\textasciicircum{}2 \textasciitilde{} \{y\}"
    with pytest.raises(MtlbenchError, match="unknown table format"):
        render([TABLE], "html")


def test_protocol_follows_the_eval_settings_of_the_split(tmp_path):
    d = _run_dir(tmp_path, "e", ["depth"], {"depth": {"rmse_img": 0.4}},
                 {"name": "nyuv2", "options": {"protocol": "official"}})
    data = json.loads((d / "metrics.json").read_text())
    data["eval"] = {"test": {"eigen_crop": True}, "val": SCORED}
    (d / "metrics.json").write_text(json.dumps(data))
    run = R.load_run(d)
    assert run.protocol("test") == "eigen-depth" and run.protocol("val") == "nyud-mt"
    (table,) = R.comparison_tables([run])
    assert "ZoeDepth" in {row[0] for row in table.rows}


def test_custom_eval_settings_leave_every_published_protocol(tmp_path):
    d = _run_dir(tmp_path, "c", ["depth"], {"depth": {"rmse": 0.5}},
                 {"name": "nyuv2", "options": {"protocol": "official"}})
    data = json.loads((d / "metrics.json").read_text())
    data["eval"] = {"test": {"edge_tolerance": 0.0075, "max_depth": 5.0, **SCORED}}
    (d / "metrics.json").write_text(json.dumps(data))
    run = R.load_run(d)
    assert run.custom_eval("test") == ["max_depth 5.0", "edge_tolerance 0.0075"]
    assert run.protocol("test") is None
    (table,) = R.comparison_tables([run])
    assert len(table.rows) == 1 and "settings no published protocol uses" in table.caption
    assert "eval max_depth 5.0, edge_tolerance 0.0075" in table.rows[0][-1]
    # Eigen's crop on the random split: Beneath the Surface did not crop
    cfg = C.from_dict({"data": {"name": "nyuv2", "options": {"protocol": "random"}}, "eval": {"eigen_crop": True}},
                      C.RunConfig())
    assert R.run_protocol(cfg) is None


def test_delta_m_needs_references_of_the_same_setting(tmp_path):
    multi = _run_dir(tmp_path, "multi", ["depth", "seg"], MULTI)
    other_size = [_run_dir(tmp_path, t, [t], {t: SINGLE[t]}, {"size": 128}) for t in ("depth", "seg")]
    (table,) = R.comparison_tables([R.load_run(multi)], baselines=[R.load_run(p) for p in other_size])
    assert table.raw[0]["delta_m_mti"] is None
    same = [_run_dir(tmp_path, f"{t}2", [t], {t: SINGLE[t]}) for t in ("depth", "seg")]
    (table,) = R.comparison_tables([R.load_run(multi)], baselines=[R.load_run(p) for p in other_size + same])
    assert table.raw[0]["delta_m_mti"] == pytest.approx(100 * (1 / 11 + 0.1) / 2)
    assert f"depth: {same[0]};" in table.caption and f"{other_size[0]};" not in table.caption
    with pytest.raises(MtlbenchError, match="a Δm reference is a one-task run"):
        R.comparison_tables([R.load_run(multi)], baselines=[R.load_run(multi)])


def test_every_metric_has_a_column():
    from mtlbench.metrics import DepthMetrics, EdgeMetrics, SegMetrics

    keys = ([f"depth/{k}" for k in DepthMetrics().names] + [f"seg/{k}" for k in SegMetrics(3, ("a", "b", "c")).names]
            + [f"edge/{k}" for k in EdgeMetrics().names])
    assert [k for k in keys if R.column_record(k) is None] == []
    # headers, units and percent flags as the tables have always shown them
    heads = {k: R.column_record(k).header for k in ("depth/rmse", "depth/rmse_img", "depth/delta1_img",
                                                     "depth/dbe_acc", "seg/miou", "seg/iou/b", "edge/ods_threshold")}
    assert heads == {"depth/rmse": "RMSE m", "depth/rmse_img": "RMSE/img m", "depth/delta1_img": "δ1/img %",
                     "depth/dbe_acc": "DBE acc px", "seg/miou": "mIoU %", "seg/iou/b": "IoU b %",
                     "edge/ods_threshold": "ODS threshold"}


def test_default_columns_have_records():
    for protocol, keys in R.DEFAULT_COLUMNS.items():
        assert [k for k in keys if R.column_record(k) is None] == [], protocol
    assert R.column_record("depth/delta1_beneath").header == "δ1 as stated %"


def test_columns_follow_the_records_direction_and_percent(tmp_path):
    d = _run_dir(tmp_path, "r", ["depth", "edge"], {"depth": {"rmse": 0.5, "delta1": 0.8125},
                                                    "edge": {"ods": 0.7, "ods_threshold": 0.25}})
    (table,) = R.comparison_tables([R.load_run(d)], columns=["depth/rmse", "depth/delta1", "edge/ods_threshold"],
                                   delta=())
    assert table.columns == ["model", "backbone", "RMSE m ↓", "δ1 % ↑", "ODS threshold", "source"]
    assert table.rows[0][2:5] == ["0.5000", "81.25", "0.2500"]


def test_metrics_file_that_is_not_an_object(tmp_path):
    d = _run_dir(tmp_path, "r", ["depth"], {"depth": {"rmse": 0.6}})
    (d / "metrics.json").write_text("[1]")
    with pytest.raises(MtlbenchError, match="not an mtlbench metrics file"):
        R.load_run(d)


def test_nyud_protocols_need_their_resolution_and_four_tasks_their_own_rows(tmp_path):
    official = {"name": "nyuv2", "options": {"protocol": "official"}}
    four = {**MULTI, "normals": {"mean": 21.0, "median": 15.0}}
    run = R.load_run(_run_dir(tmp_path, "four", ["seg", "depth", "normals", "edge"], four, official))
    assert run.protocol() == "nyud-mt-4task"
    (table,) = R.comparison_tables([run])
    published = {row[0] for row in table.rows[1:]}
    assert {"ATRC", "InvPT", "MLoRE", "TaskPrompter (released ckpt)"} <= published
    assert "PAD-Net" not in published and "MTI-Net" not in published  # three- and two-task rows stay apart
    record = R.known_column_record("normals/mean")
    assert table.rows[0][table.columns.index(f"{record.header} {record.arrow}")] == "21.0000"
    # three tasks of the same data: the NYUD-MT table, without the four-task rows
    three = R.load_run(_run_dir(tmp_path, "three", ["depth", "seg", "edge"], MULTI, official))
    (table,) = R.comparison_tables([three])
    assert "ATRC" not in {row[0] for row in table.rows} and "PAD-Net" in {row[0] for row in table.rows}
    # scored at the input resolution, or by an mtlbench that did not record it: no published rows
    for scored in ({"scored_size": [256, 256]}, {}):
        other = R.load_run(_run_dir(tmp_path, f"s{len(scored)}", ["depth", "seg", "edge"], MULTI, official, scored))
        assert other.protocol() is None
        (table,) = R.comparison_tables([other])
        assert len(table.rows) == 1 and "not scored at that protocol's resolution" in table.caption


def test_exact_edge_scores_are_not_labelled_approximate(tmp_path):
    official = {"name": "nyuv2", "options": {"protocol": "official"}}
    run = R.load_run(_run_dir(tmp_path, "x", ["depth", "seg", "edge"], MULTI, official,
                              {**SCORED, "edge_matching": "exact"}))
    (table,) = R.comparison_tables([run])
    assert "APPROXIMATE" not in table.caption and "exact one-to-one matching" in table.caption
