"""Figures: where panels land, what placeholders and plots look like, atomic PNG writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtlbench.report import figures as F
from mtlbench.report.figures import (MARGIN, PALETTE, PLACEHOLDER_GREY, attention_figure,
                                     caption_height, line_plot, nice_ticks, panel_grid, save_png,
                                     seed_figure, title_height, to_uint8_rgb, training_curves)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(colour: tuple[int, int, int], h: int = 30, w: int = 40) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def cell_origin(r: int, c: int, cell_w: int, cell_h: int, captions: bool = True,
                title: str | None = None) -> tuple[int, int]:
    """Top-left (x, y) of cell (r, c)'s panel area, from the layout in the module docstring."""
    cap = caption_height() if captions else 0
    return (MARGIN + c * (cell_w + MARGIN),
            title_height(title) + MARGIN + r * (cap + cell_h + MARGIN) + cap)


def pixel(img: Image.Image, x: float, y: float) -> tuple[int, int, int]:
    return img.getpixel((int(x), int(y)))[:3]


# ----------------------------------------------------------------------------- panel_grid


def test_panel_grid_places_panels_and_has_formula_size():
    panels = [("red", solid(RED)), ("blue", solid(BLUE)), ("green", solid(GREEN))]
    img = panel_grid(panels, cols=2, title="t")
    cap, top = caption_height(), title_height("t")
    assert cap > 0 and top > 0
    assert img.size == (2 * 40 + 3 * MARGIN, top + 2 * (cap + 30) + 3 * MARGIN)
    for i, colour in enumerate([RED, BLUE, GREEN]):
        x, y = cell_origin(i // 2, i % 2, 40, 30, title="t")
        assert pixel(img, x + 20, y + 15) == colour
    # the empty fourth cell is background
    x, y = cell_origin(1, 1, 40, 30, title="t")
    assert pixel(img, x + 20, y + 15) == (255, 255, 255)


def test_panel_grid_cells_take_largest_panel_and_centre_smaller_ones():
    img = panel_grid([("", solid(RED, 10, 10)), ("", solid(BLUE, 50, 20))], cols=2)
    # no captions and no title: the strips take no space
    assert img.size == (2 * 20 + 3 * MARGIN, 50 + 2 * MARGIN)
    x, y = cell_origin(0, 0, 20, 50, captions=False)
    assert pixel(img, x + 10, y + 25) == RED
    assert pixel(img, x + 10, y + 2) == (255, 255, 255)  # above the centred 10×10 panel


def test_none_panel_is_grey_placeholder():
    img = panel_grid([("a", solid(RED)), ("b", None)], cols=2)
    x, y = cell_origin(0, 1, 40, 30)
    # a corner of the cell, away from the centred text
    assert pixel(img, x + 2, y + 2) == PLACEHOLDER_GREY
    assert pixel(img, x + 37, y + 27) == PLACEHOLDER_GREY
    # the text darkens some pixels of the placeholder
    cell = np.asarray(img)[y:y + 30, x:x + 40]
    assert (cell.sum(-1) < sum(PLACEHOLDER_GREY) - 60).any()


def test_panel_grid_takes_tensors_and_rejects_bad_input():
    chw = torch.zeros(3, 8, 8)
    chw[2] = 1.0
    img = panel_grid([("", chw)], cols=1)
    assert pixel(img, MARGIN + 4, MARGIN + 4) == BLUE
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


# ----------------------------------------------------------------------------- seed_figure


def test_seed_figure_puts_each_input_in_its_cell():
    colours = {"rgb": (250, 10, 10), "gt_seg": (10, 250, 10), "pred_seg": (10, 10, 250),
               "pred_edge": (250, 250, 10), "gt_depth": (10, 250, 250),
               "pred_depth": (250, 10, 250)}
    img = seed_figure(**{k: solid(v) for k, v in colours.items()})
    layout = [["rgb", "gt_seg", "pred_seg"], ["pred_edge", "gt_depth", "pred_depth"]]
    assert img.size == (3 * 40 + 4 * MARGIN, 2 * (caption_height() + 30) + 3 * MARGIN)
    for r, row in enumerate(layout):
        for c, name in enumerate(row):
            x, y = cell_origin(r, c, 40, 30)
            assert pixel(img, x + 20, y + 15) == colours[name], name


def test_seed_figure_placeholders_for_missing_gt_and_untrained_tasks():
    img = seed_figure(solid(RED), None, None, None, solid(BLUE), None)
    for r, c in [(1, 0), (0, 1), (1, 1), (1, 2)]:
        x, y = cell_origin(r, c, 40, 30)
        assert pixel(img, x + 1, y + 1) == PLACEHOLDER_GREY
    assert pixel(img, *cell_origin(0, 2, 40, 30)) == BLUE


# ----------------------------------------------------------------------------- attention


def test_attention_peak_is_hottest_in_its_panel():
    rgb = solid((128, 128, 128), 64, 64)
    m = np.zeros((4, 4))
    m[1, 2] = 1.0  # key cell rows 16–31, cols 32–47 of the image
    img = attention_figure(rgb, [("a", m)])
    assert img.size == (2 * 64 + 3 * MARGIN, caption_height() + 64 + 2 * MARGIN)
    x, y = cell_origin(0, 1, 64, 64)
    panel = np.asarray(img)[y:y + 64, x:x + 64].astype(int)
    hot = panel[..., 0] - panel[..., 2]
    py, px = np.unravel_index(hot.argmax(), hot.shape)
    assert 16 <= py < 32 and 32 <= px < 48
    # the RGB panel is left as it was
    assert pixel(img, *cell_origin(0, 0, 64, 64)) == (128, 128, 128)


def test_attention_query_cross_at_given_position():
    rgb = solid((128, 128, 128), 40, 60)
    img = attention_figure(rgb, [("a", np.random.default_rng(0).random((5, 6)))], query=(10, 45))
    for c in (0, 1):
        x, y = cell_origin(0, c, 60, 40)
        assert pixel(img, x + 45, y + 10) == F.CROSS
        assert pixel(img, x + 45 + 3, y + 10) == F.CROSS  # an arm
        assert pixel(img, x + 45 + 3, y + 10 + 3) != F.CROSS  # not a filled square


# ----------------------------------------------------------------------------- line plots


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0.13, 0.87) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(12, 57) == [10, 20, 30, 40, 50, 60]
    assert nice_ticks(1, 12, integer=True) == [0, 5, 10, 15]
    const = nice_ticks(3.0, 3.0)
    assert const[0] < 3.0 < const[-1] and 4 <= len(const) <= 6
    assert F.format_ticks([0.0, 0.25, 0.5]) == ["0.00", "0.25", "0.50"]
    assert F.format_ticks([100000.0, 200000.0]) == ["1e5", "2e5"]


def test_line_plot_series_colour_and_direction():
    img = line_plot({"up": ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])}, "t", "x", "y", size=(300, 200))
    assert img.size == (300, 200)
    a = np.asarray(img).astype(int)
    ys, xs = np.nonzero(np.abs(a - np.array(PALETTE[0])).sum(-1) == 0)
    assert len(xs) > 100
    # leave out the legend swatch (bottom strip) before looking at the line
    keep = ys < 150
    ys, xs = ys[keep], xs[keep]
    left, right = xs < np.percentile(xs, 20), xs > np.percentile(xs, 80)
    # image rows grow downwards: the left end of an increasing line is lower (larger row)
    assert ys[left].mean() > ys[right].mean() + 50


def test_line_plot_second_series_and_marks():
    img = line_plot({"a": ([0, 1], [0, 1]), "b": ([0, 1], [1, 0])}, "t", "x", "y",
                    marks={"best": (0.5, 0.5)})
    a = np.asarray(img).reshape(-1, 3)
    colours = {tuple(p) for p in a}
    assert PALETTE[0] in colours and PALETTE[1] in colours and F.MARK in colours


@pytest.mark.parametrize("series", [
    {"nan": ([0, 1, 2], [math.nan, math.nan, math.nan])},
    {"one": ([3], [0.5])},
    {"const": ([0, 1, 2], [2.0, 2.0, 2.0])},
    {"gap": ([0, 1, 2, 3], [1.0, math.nan, 2.0, 3.0])},
    {},
])
def test_line_plot_degenerate_series_do_not_crash(series):
    img = line_plot(series, "t", "x", "y", marks={"m": (math.nan, 1.0)})
    assert img.size == (480, 320)


def test_line_plot_single_point_is_visible():
    img = line_plot({"one": ([3], [0.5])}, "t", "x", "y")
    a = np.asarray(img)[:250].astype(int)  # above the legend
    assert (np.abs(a - np.array(PALETTE[0])).sum(-1) == 0).sum() >= 5


def test_unsupported_characters_are_replaced():
    font = F._font(12)
    assert F._safe("seg→depth δ1 é", font) == "seg->depth d1 e"


# ----------------------------------------------------------------------------- training curves


def fake_records(tasks=("depth", "seg")) -> list[dict]:
    metric = {"depth": "rmse", "seg": "miou", "edge": "ods", "normals": "mean_angle"}
    return [{"epoch": e,
             "train": {t: 1.0 / e for t in tasks} | {"total": 2.0 / e},
             "val": {t: {"loss": 1.2 / e, metric[t]: 0.1 * e, "other": 1.0} for t in tasks}
             | {"total": {"loss": 2.4 / e}},
             "select": 0.1 * e, "best": e == 2, "time_s": 1.0} for e in (1, 2, 3)]


def test_training_curves_has_two_plots_per_task():
    img = training_curves(fake_records(("depth", "seg")), title="run")
    assert img.size == (2 * 480 + 3 * MARGIN, title_height("run") + 2 * 320 + 3 * MARGIN)
    img = training_curves(fake_records(("edge",)), size=(200, 150))
    assert img.size == (2 * 200 + 3 * MARGIN, 150 + 2 * MARGIN)


def test_training_curves_unknown_task_and_missing_metric():
    assert F._key_metric(fake_records(("normals",)), "normals") == "mean_angle"
    assert F._key_metric(fake_records(("seg",)), "seg") == "miou"
    recs = [{"epoch": 1, "train": {"x": 0.5}}, {"epoch": 2, "train": {"x": 0.4}, "best": True}]
    img = training_curves(recs, size=(200, 150))
    assert img.size == (2 * 200 + 3 * MARGIN, 150 + 2 * MARGIN)
    with pytest.raises(F.MtlbenchError):
        training_curves([])


# ----------------------------------------------------------------------------- save_png


def test_save_png_round_trips_without_temp_files(tmp_path: Path):
    img = panel_grid([("x", solid(RED)), ("y", None)], cols=2)
    path = tmp_path / "sub" / "fig.png"
    save_png(img, path)
    assert [p.name for p in path.parent.iterdir()] == ["fig.png"]
    with Image.open(path) as back:
        assert back.size == img.size
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))


def test_save_png_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    img = Image.new("RGB", (4, 4))

    def broken(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_png(img, tmp_path / "fig.png")
    assert list(tmp_path.iterdir()) == []


def test_save_png_unwritable_folder_raises(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        save_png(Image.new("RGB", (4, 4)), blocker / "fig.png")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_save_png_read_only_folder_raises(tmp_path: Path):
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
            save_png(Image.new("RGB", (4, 4)), folder / "fig.png")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)
