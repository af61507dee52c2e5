"""Figures: where grid panels land, what the plots hold (read back from the matplotlib axes), and
files written whole as PNG, PDF or SVG."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from mtlbench.metrics import EdgeMetrics
from mtlbench.report import figures as F
from mtlbench.report.figures import attention_figure, pr_curve, sample_figure, save_figure, save_png, training_curves
from mtlbench.report.plotting import (
    DPI,
    MARGIN,
    PLACEHOLDER_GREY,
    caption_height,
    line_plot,
    panel_grid,
    render,
    title_height,
    to_uint8_rgb,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def solid(colour: tuple[int, int, int], h: int = 30, w: int = 40) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def cell_origin(r: int, c: int, cell_w: int, cell_h: int, captions: bool = True,
                title: str | None = None) -> tuple[int, int]:
    """Top-left (x, y) of cell (r, c)'s panel area, from the layout in plotting's docstring."""
    cap = caption_height() if captions else 0
    return (MARGIN + c * (cell_w + MARGIN),
            title_height(title) + MARGIN + r * (cap + cell_h + MARGIN) + cap)


def crop(a: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    return a[y:y + h, x:x + w]


def size_px(fig: Figure) -> tuple[int, int]:
    w, h = fig.get_size_inches() * fig.dpi
    return round(w), round(h)


def data_lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Label → (x, y) of the labelled lines of ``ax``."""
    return {line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
            for line in ax.get_lines() if not line.get_label().startswith("_")}


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# ----------------------------------------------------------------------------- panel_grid


def test_panel_grid_places_panels_pixel_for_pixel_and_has_formula_size():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    panels = [("red", solid(RED)), ("noise", noise), ("green", solid(GREEN))]
    fig = panel_grid(panels, cols=2, title="t")
    a = render(fig)
    cap, top = caption_height(), title_height("t")
    assert cap > 0 and top > 0
    assert a.shape == (top + 2 * (cap + 30) + 3 * MARGIN, 2 * 40 + 3 * MARGIN, 3)
    for i, (_, img) in enumerate(panels):
        x, y = cell_origin(i // 2, i % 2, 40, 30, title="t")
        assert np.array_equal(crop(a, x, y, 40, 30), img), i
        # the margin around each panel is background
        assert (a[y - 1, x:x + 40] == WHITE).all() and (a[y + 30, x:x + 40] == WHITE).all()
    x, y = cell_origin(1, 1, 40, 30, title="t")
    assert (crop(a, x, y, 40, 30) == WHITE).all()  # the empty fourth cell
    assert [ax.get_label() for ax in fig.axes] == ["red", "noise", "green"]


def test_panel_grid_cells_take_largest_panel_and_centre_smaller_ones():
    fig = panel_grid([("", solid(RED, 10, 10)), ("", solid(BLUE, 50, 20))], cols=2)
    a = render(fig)
    # no captions and no title: the strips take no space
    assert a.shape[:2] == (50 + 2 * MARGIN, 2 * 20 + 3 * MARGIN)
    x, y = cell_origin(0, 0, 20, 50, captions=False)
    assert (crop(a, x + 5, y + 20, 10, 10) == RED).all()
    assert (crop(a, x, y, 20, 20) == WHITE).all()  # above the centred 10×10 panel
    assert (crop(a, *cell_origin(0, 1, 20, 50, captions=False), 20, 50) == BLUE).all()


def test_none_and_text_panels_are_grey_placeholders_with_text():
    fig = panel_grid([("a", solid(RED)), ("b", None), ("c", "not trained")], cols=3)
    a = render(fig).astype(int)
    (said,) = texts(fig.axes[1])
    assert said.split() == ["no", "ground", "truth"] and "\n" in said  # wrapped to the narrow cell
    assert texts(fig.axes[2])[0].split() == ["not", "trained"]
    for c in (1, 2):
        cell = crop(a, *cell_origin(0, c, 40, 30), 40, 30)
        assert (cell[0, 0] == PLACEHOLDER_GREY).all() and (cell[-1, -1] == PLACEHOLDER_GREY).all()
        assert (cell.sum(-1) < sum(PLACEHOLDER_GREY) - 60).any()  # the text darkens some pixels


def test_long_caption_and_title_are_shrunk_into_their_strip():
    caption = "a caption far longer than its forty pixel cell"
    fig = panel_grid([(caption, solid(RED)), ("b", solid(BLUE))], cols=2, title="title " * 20)
    renderer = fig.canvas.get_renderer()
    width = 2 * 40 + 3 * MARGIN
    cap_text = next(t for t in fig.texts if t.get_text() == caption)
    box = cap_text.get_window_extent(renderer)
    assert box.x0 >= MARGIN - 1 and box.x1 <= MARGIN + 40 + 1
    title = next(t for t in fig.texts if t.get_text().startswith("title"))
    assert title.get_window_extent(renderer).width <= width - 2 * MARGIN + 1
    short = next(t for t in fig.texts if t.get_text() == "b")
    assert cap_text.get_fontsize() < short.get_fontsize()


def test_panel_grid_takes_tensors_and_rejects_bad_input():
    chw = torch.zeros(3, 8, 8)
    chw[2] = 1.0
    a = render(panel_grid([("", chw)], cols=1))
    assert (crop(a, MARGIN, MARGIN, 8, 8) == BLUE).all()
    with pytest.raises(ValueError):
        panel_grid([], cols=1)
    with pytest.raises(ValueError):
        panel_grid([("", solid(RED))], cols=0)


def test_to_uint8_rgb_conversions():
    assert to_uint8_rgb(np.full((2, 3), 7, np.uint8)).tolist() == [[[7, 7, 7]] * 3] * 2
    assert to_uint8_rgb(torch.ones(1, 2, 2)).tolist() == [[[255] * 3] * 2] * 2
    assert to_uint8_rgb(np.array([[0.5, 2.0]])).tolist() == [[[128] * 3, [255] * 3]]
    assert to_uint8_rgb(np.ones((1, 4, 4), np.float32)).shape == (4, 4, 3)
    assert to_uint8_rgb(np.zeros((3, 5, 3), np.uint8)).shape == (3, 5, 3)
    assert to_uint8_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert to_uint8_rgb(np.array([[300, -5]])).tolist() == [[[255] * 3, [0] * 3]]
    with pytest.raises(ValueError):
        to_uint8_rgb(np.zeros((5, 6, 7)))


# --------------------------------------------------------------------------- sample_figure


def test_sample_figure_puts_each_input_in_its_cell():
    colours = {"rgb": (250, 10, 10), "gt_seg": (10, 250, 10), "pred_seg": (10, 10, 250),
               "pred_edge": (250, 250, 10), "gt_depth": (10, 250, 250),
               "pred_depth": (250, 10, 250)}
    fig = sample_figure(**{k: solid(v) for k, v in colours.items()})
    a = render(fig)
    layout = [["rgb", "gt_seg", "pred_seg"], ["pred_edge", "gt_depth", "pred_depth"]]
    assert a.shape[:2] == (2 * (caption_height() + 30) + 3 * MARGIN, 3 * 40 + 4 * MARGIN)
    for r, row in enumerate(layout):
        for c, name in enumerate(row):
            assert (crop(a, *cell_origin(r, c, 40, 30), 40, 30) == colours[name]).all(), name
    assert [ax.get_label() for ax in fig.axes] == ["RGB", "GT seg", "predicted seg", "predicted edges",
                                                   "GT depth", "predicted depth"]


def test_sample_figure_placeholders_for_missing_gt_and_untrained_tasks():
    fig = sample_figure(solid(RED), None, None, None, solid(BLUE), None, title="run: frame")
    a = render(fig)
    said = {ax.get_label(): " ".join(" ".join(texts(ax)).split()) for ax in fig.axes}
    assert said == {"RGB": "", "GT seg": "no ground truth", "predicted seg": "",
                    "predicted edges": "not trained", "GT depth": "no ground truth",
                    "predicted depth": "not trained"}
    for r, c in [(1, 0), (0, 1), (1, 1), (1, 2)]:
        x, y = cell_origin(r, c, 40, 30, title="run: frame")
        assert (a[y + 1, x + 1] == PLACEHOLDER_GREY).all()
    assert (crop(a, *cell_origin(0, 2, 40, 30, title="run: frame"), 40, 30) == BLUE).all()


# ----------------------------------------------------------------------------- attention


def test_attention_heat_is_the_normalised_map_and_brightest_at_its_peak():
    rgb = solid((128, 128, 128), 64, 64)
    m = np.zeros((4, 4))
    m[1, 2] = 3.0  # key cell rows 16–31, cols 32–47 of the image
    m[3, 0] = 1.0
    fig = attention_figure(rgb, [("a", m)])
    heat = fig.axes[1].get_images()[1]
    assert np.array_equal(np.asarray(heat.get_array()), m / 3.0)
    assert heat.get_extent() == [-0.5, 63.5, 63.5, -0.5]  # stretched over the whole image
    assert fig.axes[0].get_images()[0].get_extent() == heat.get_extent()
    a = render(fig).astype(int)
    assert a.shape[:2] == (caption_height() + 64 + 2 * MARGIN, 2 * 64 + 3 * MARGIN)
    panel = crop(a, *cell_origin(0, 1, 64, 64), 64, 64)
    # plasma rises in lightness: the brightest pixel lies in the peak's cell
    py, px = np.unravel_index(panel.sum(-1).argmax(), panel.shape[:2])
    assert 16 <= py < 32 and 32 <= px < 48
    assert (crop(a, *cell_origin(0, 0, 64, 64), 64, 64) == 128).all()  # the RGB panel as it was


def test_attention_query_cross_at_given_position():
    rgb = solid((128, 128, 128), 40, 60)
    fig = attention_figure(rgb, [("a", np.random.default_rng(0).random((5, 6)))], query=(10, 45))
    a = render(fig)
    for c in (0, 1):
        panel = crop(a, *cell_origin(0, c, 60, 40), 60, 40)
        green = (panel == F.CROSS).all(-1)
        rows, cols = np.nonzero(green)
        # two 11-pixel arms through the query pixel, nothing else green
        assert set(cols[rows == 10]) == set(range(40, 51)) and set(rows[cols == 45]) == set(range(5, 16))
        assert green.sum() == 21
        assert (panel[9, 40:45] == 0).all() and (panel[9, 46:51] == 0).all()  # the dark outline
    with pytest.raises(ValueError):
        attention_figure(rgb, [("a", np.zeros((2, 2, 2)))])


# ----------------------------------------------------------------------------- line plots


def test_line_plot_lines_hold_the_series_and_marks():
    fig = line_plot({"a": ([0, 1, 2], [0.0, 1.0, 4.0]), "b": ([0, 1, 2], [1.0, 0.5, 0.0])}, "t", "x", "y",
                    marks={"best": (1, 0.5), "gone": (math.nan, 1.0)}, size=(300, 200))
    assert size_px(fig) == (300, 200) and render(fig).shape == (200, 300, 3)
    (ax,) = fig.axes
    lines = data_lines(ax)
    assert list(lines) == ["a", "b", "best"]
    assert lines["a"][1].tolist() == [0.0, 1.0, 4.0] and lines["b"][0].tolist() == [0, 1, 2]
    assert lines["best"][0].tolist() == [1] and lines["best"][1].tolist() == [0.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "best"]
    assert ax.get_title() == "t" and ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    # whole-number x: whole-number ticks only
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_line_plot_non_finite_points_are_gaps():
    fig = line_plot({"gap": ([0, 1, 2, 3], [1.0, math.nan, "x", 3.0]), "inf": ([0.5, 1.5], [math.inf, 2.0])},
                    "t", "x", "y")
    lines = data_lines(fig.axes[0])
    assert np.isnan(lines["gap"][1][[1, 2]]).all() and lines["gap"][1][[0, 3]].tolist() == [1.0, 3.0]
    assert np.isnan(lines["inf"][1][0]) and lines["inf"][1][1] == 2.0
    assert not all(float(t).is_integer() for t in fig.axes[0].get_xticks())  # x has halves


@pytest.mark.parametrize("series", [
    {"nan": ([0, 1, 2], [math.nan, math.nan, math.nan])},
    {"one": ([3], [0.5])},
    {"const": ([0, 1, 2], [2.0, 2.0, 2.0])},
    {},
])
def test_line_plot_degenerate_series_draw(series):
    fig = line_plot(series, "t", "x", "y", marks={"m": (math.nan, 1.0)})
    assert render(fig).shape == (320, 480, 3)
    finite = any(np.isfinite(np.asarray(ys, float)).any() for _, ys in series.values())
    assert ("no data" in texts(fig.axes[0])) != finite


def test_line_plot_single_point_has_a_marker():
    (line,) = line_plot({"one": ([3], [0.5])}, "t", "x", "y").axes[0].get_lines()
    assert line.get_marker() == "o"


# ----------------------------------------------------------------------------- training curves


def fake_records(tasks=("depth", "seg")) -> list[dict]:
    metric = {"depth": "rmse", "seg": "miou", "edge": "ods", "normals": "mean_angle"}
    return [{"epoch": e,
             "train": {t: 1.0 / e for t in tasks} | {"total": 2.0 / e},
             "val": {t: {"loss": 1.2 / e, metric[t]: 0.1 * e, "other": 1.0} for t in tasks}
             | {"total": {"loss": 2.4 / e}},
             "select": 0.1 * e, "best": e == 2, "time_s": 1.0} for e in (1, 2, 3)]


def test_training_curves_plot_each_tasks_losses_and_key_metric():
    fig = training_curves(fake_records(("seg", "depth")), title="run")
    assert size_px(fig) == (2 * 480, 2 * 320)
    assert fig.get_suptitle() == "run"
    assert [ax.get_title() for ax in fig.axes] == ["depth loss", "depth rmse (val)", "seg loss",
                                                   "seg miou (val)"]
    loss, metric = data_lines(fig.axes[0]), data_lines(fig.axes[3])
    assert list(loss) == ["train", "val", "best (epoch 2)"]
    assert loss["train"][0].tolist() == [1, 2, 3]
    np.testing.assert_allclose(loss["train"][1], [1.0, 0.5, 1 / 3])
    np.testing.assert_allclose(loss["val"][1], [1.2, 0.6, 0.4])
    assert loss["best (epoch 2)"][0].tolist() == [2] and loss["best (epoch 2)"][1] == pytest.approx([0.6])
    assert list(metric) == ["val miou", "best (epoch 2)"]
    np.testing.assert_allclose(metric["val miou"][1], [0.1, 0.2, 0.3])


def test_training_curves_size_unknown_task_and_missing_metric(tmp_path: Path):
    fig = training_curves(fake_records(("edge",)), size=(200, 150))
    save_png(fig, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as im:
        assert im.size == (2 * 200, 150)
    assert F._key_metric(fake_records(("normals",)), "normals") == "mean_angle"
    assert F._key_metric(fake_records(("seg",)), "seg") == "miou"
    recs = [{"epoch": 1, "train": {"x": 0.5}}, {"epoch": 2, "train": {"x": 0.4}, "best": True}]
    fig = training_curves(recs, size=(200, 150))
    loss_ax, metric_ax = fig.axes
    assert list(data_lines(loss_ax)) == ["train", "val", "best (epoch 2)"]  # marked on train: no val
    assert "no data" in texts(metric_ax) and not data_lines(metric_ax)
    with pytest.raises(F.MtlbenchError):
        training_curves([])
    with pytest.raises(F.MtlbenchError):
        training_curves([{"epoch": 1}])


# ----------------------------------------------------------------------------- P/R curves


def edge_curve() -> dict[str, list[float]]:
    """EdgeMetrics.curve() of a blurred line against its sharp ground truth."""
    gt = torch.zeros(1, 64, 64)
    gt[0, 8:56, 30] = 1
    pred = torch.nn.functional.avg_pool2d(gt[None], (1, 5), 1, (0, 2))[0] * 0.9
    pred[0, 20:40, 10] = 0.3  # a false edge
    m = EdgeMetrics(thresholds=19)
    m.update(pred, {"edge": gt})
    return m.curve()


def pr_lines(fig: Figure) -> list:
    return [ln for ln in fig.axes[0].get_lines() if ln.get_gid() != "iso-f"]


def test_pr_curve_draws_edge_metrics_curve():
    curve = edge_curve()
    p, r, f = (np.array(curve[k]) for k in ("precision", "recall", "fscore"))
    keep = (p > 0) | (r > 0)
    assert 0 < keep.sum() < len(p)  # some thresholds predict nothing: left out
    fig = pr_curve(curve)
    (ax,) = fig.axes
    line, best = pr_lines(fig)
    assert np.array_equal(line.get_xdata(), r[keep]) and np.array_equal(line.get_ydata(), p[keep])
    i = int(np.argmax(f))
    assert best.get_xdata().tolist() == [r[i]] and best.get_ydata().tolist() == [p[i]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"max F {f[i]:.3f}"]
    assert sum(ln.get_gid() == "iso-f" for ln in ax.get_lines()) == 9
    assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")


def test_pr_curve_compares_runs_and_says_no_data():
    curve = edge_curve()
    half = dict(curve, precision=[v / 2 for v in curve["precision"]])
    fig = pr_curve({"mtinet": curve, "hps": half, "empty": EdgeMetrics().curve()})
    lines = pr_lines(fig)
    assert len(lines) == 4  # a line and a best dot per non-empty run
    assert [t.get_text().split(":")[0] for t in fig.axes[0].get_legend().get_texts()] == ["mtinet", "hps"]
    assert lines[0].get_color() != lines[2].get_color()
    empty = pr_curve(EdgeMetrics().curve())
    assert not pr_lines(empty) and "no data" in texts(empty.axes[0])


# ----------------------------------------------------------------------------- saving


def test_save_figure_format_from_suffix(tmp_path: Path):
    fig = line_plot({"a": ([0, 1], [0, 1])}, "t", "x", "y", size=(300, 200))
    for name in ("f.png", "f.pdf", "f.svg", "upper.PNG"):
        save_figure(fig, tmp_path / "sub" / name)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.pdf", "f.png", "f.svg", "upper.PNG"]
    for name in ("f.png", "upper.PNG"):
        with Image.open(tmp_path / "sub" / name) as im:
            assert im.format == "PNG" and im.size == (300, 200)
            assert np.array_equal(np.asarray(im.convert("RGB")), render(fig))
    pdf = (tmp_path / "sub" / "f.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    points = (300 / DPI * 72, 200 / DPI * 72)
    assert f"/MediaBox [ 0 0 {points[0]:g} {points[1]:g} ]".encode() in pdf
    svg = ET.parse(tmp_path / "sub" / "f.svg").getroot()
    assert svg.tag.endswith("svg") and svg.get("width") == f"{points[0]:g}pt"
    # vector files carry no date or random ids: the same figure gives the same bytes
    for name in ("f.pdf", "f.svg"):
        save_figure(fig, tmp_path / name)
        assert (tmp_path / name).read_bytes() == (tmp_path / "sub" / name).read_bytes()


def test_save_png_writes_png_whatever_the_suffix(tmp_path: Path):
    save_png(sample_figure(solid(RED), None, None, None, None, None), tmp_path / "grid.bin")
    with Image.open(tmp_path / "grid.bin") as im:
        assert im.format == "PNG"


def test_save_pil_image_round_trips_as_png_only(tmp_path: Path):
    img = Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)  # 16-bit labels
    save_figure(img, tmp_path / "labels.png")
    with Image.open(tmp_path / "labels.png") as back:
        assert np.array_equal(np.asarray(back), np.asarray(img))
    for name in ("labels.pdf", "labels.jpg"):
        with pytest.raises(ValueError):
            save_figure(img, tmp_path / name)
    with pytest.raises(ValueError, match="suffix"):
        save_figure(line_plot({}, "t", "x", "y"), tmp_path / "plot.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["labels.png"]


def test_save_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    monkeypatch.setattr(Image.Image, "save", broken)
    for figure in (line_plot({}, "t", "x", "y"), Image.new("RGB", (4, 4))):
        with pytest.raises(OSError, match="disk full"):
            save_figure(figure, tmp_path / "fig.png")
    assert list(tmp_path.iterdir()) == []


def test_save_failure_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "fig.svg"
    fig = line_plot({"a": ([0, 1], [0, 1])}, "t", "x", "y")
    save_figure(fig, path)
    before = path.read_bytes()

    def broken(self, fp, *args, **kwargs):
        fp.write(b"<svg")
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        save_figure(fig, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["fig.svg"]


def test_save_unwritable_folder_raises(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        save_png(Image.new("RGB", (4, 4)), blocker / "fig.png")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_save_read_only_folder_raises(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        probe = folder / ".probe"
        try:  # root ignores permissions: nothing to test then
            probe.touch()
            probe.unlink()
            pytest.skip("permissions are not enforced for this user")
        except PermissionError:
            pass
        with pytest.raises(PermissionError):
            save_figure(line_plot({}, "t", "x", "y"), folder / "fig.pdf")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_importing_figures_does_not_import_matplotlib():
    code = ("import sys, mtlbench.report.figures, mtlbench.report.plotting; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_names_are_plain_text_not_mathtext():
    name = r"run $\nope$"  # not valid mathtext: drawing it as such raises
    fig = training_curves([{"epoch": 1, "train": {name: 0.5}}], title=name)
    render(fig)
    assert fig.get_suptitle() == name and fig.axes[0].get_title() == f"{name} loss"
    render(panel_grid([(name, solid(RED))], cols=1, title=name))


def test_weight_curves_draw_each_tasks_logged_weight_per_epoch():
    from mtlbench.report.figures import weight_curves

    records = [{"epoch": 1, "weights": {"depth": 1.0, "seg": 1.0}},
               {"epoch": 2, "weights": {"depth": 0.5, "seg": 1.5}},
               {"epoch": 3, "weights": {"depth": 0.25, "seg": 1.75}}]
    fig = weight_curves(records, "dwa")
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()}
    assert lines["depth"] == ([1, 2, 3], [1.0, 0.5, 0.25])
    assert lines["seg"] == ([1, 2, 3], [1.0, 1.5, 1.75])
    assert "dwa" in fig.axes[0].get_title()
    from mtlbench.errors import MtlbenchError

    with pytest.raises(MtlbenchError, match="weighting config logged no task weights"):
        weight_curves([{"epoch": 1}], "config")
