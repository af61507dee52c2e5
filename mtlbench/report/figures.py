"""Figures as PIL images: prediction grids, attention maps, line plots and training curves.

Drawn with Pillow and numpy only (no matplotlib). Images come in already coloured (each task's
``colorize``); :func:`to_uint8_rgb` turns tensors or arrays into H×W×3 uint8.

Grid layout (:func:`panel_grid`), every size in pixels::

    width  = cols × cell_w + (cols + 1) × MARGIN
    height = title_height(title) + rows × (caption_height(captions) + cell_h) + (rows + 1) × MARGIN

where ``cell_w``/``cell_h`` are the largest panel's width/height (panels are centred in their
cell), ``title_height`` is 0 without a title and ``caption_height`` is 0 when every caption is
empty. The panel area of cell (row r, column c) starts at::

    x = MARGIN + c × (cell_w + MARGIN)
    y = title_height + MARGIN + r × (caption_h + cell_h + MARGIN) + caption_h
"""

from __future__ import annotations

import math
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

MARGIN = 8
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
PLACEHOLDER_GREY = (200, 200, 200)
PLACEHOLDER_TEXT = (90, 90, 90)
CROSS = (0, 255, 0)
# distinct series colours (the usual ten-colour categorical set); series i takes PALETTE[i % 10]
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MARK = (0, 0, 0)
GRID = (228, 228, 228)
INSET = 6  # px between a plot's box and its extreme ticks
DEFAULT_CELL = (128, 96)  # placeholder cell (w, h) when a grid has no image at all

# the validation metric plotted per known task; other tasks take their first non-loss metric
KEY_METRIC = {"depth": "rmse", "seg": "miou", "edge": "ods"}
_KNOWN_ORDER = ("depth", "seg", "edge")


# ----------------------------------------------------------------------------- text


@lru_cache(maxsize=None)
def _font(size: int = 12) -> Any:
    """Pillow's bundled font at ``size`` px; the fixed bitmap font when FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()


def _text_w(text: str, font: Any) -> int:
    if not text:
        return 0
    left, _, right, _ = font.getbbox(text)
    return math.ceil(right - left)


def _line_h(font: Any) -> int:
    # ascender to descender of tall glyphs, so every line of a font has the same height
    bottom = font.getbbox("Ag|")[3]
    return math.ceil(bottom) + 2


def caption_height(captions: Sequence[str] = ("x",)) -> int:
    """Height of the caption strip above each grid row; 0 when every caption is empty.

    Args:
        captions: the grid's captions.
    """
    return _line_h(_font(12)) + 4 if any(captions) else 0


def title_height(title: str | None) -> int:
    """Height of a grid's title strip (0 without a title).

    Args:
        title: the title, or None.
    """
    return _line_h(_font(15)) + MARGIN if title else 0


# stand-ins for characters the bundled font lacks (it covers little beyond ASCII)
_ASCII_FOR = {"→": "->", "←": "<-", "↔": "<->", "×": "x", "δ": "d", "Δ": "D", "²": "^2",
              "³": "^3", "μ": "u", "—": "-", "–": "-", "≤": "<=", "≥": ">=", "’": "'", "“": '"',
              "”": '"'}


@lru_cache(maxsize=4096)
def _has_glyph(font: Any, char: str) -> bool:
    # a missing glyph renders as the font's "notdef" box, the same as a surely-missing code point
    return char.isascii() or bytes(font.getmask(char)) != bytes(font.getmask("\uffff"))


def _safe(text: str, font: Any) -> str:
    """``text`` with characters the font cannot draw replaced (accents dropped, else "?")."""
    out = []
    for ch in text:
        if _has_glyph(font, ch):
            out.append(ch)
        elif ch in _ASCII_FOR:
            out.append(_ASCII_FOR[ch])
        else:
            base = unicodedata.normalize("NFKD", ch)[:1]
            out.append(base if base and _has_glyph(font, base) else "?")
    return "".join(out)


def _fit(text: str, font: Any, width: int) -> str:
    """``text`` made drawable (:func:`_safe`) and cut with "..." so it fits ``width`` px."""
    text = _safe(text, font)
    if _text_w(text, font) <= width:
        return text
    while text and _text_w(text + "...", font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap to ``width`` px (a word too long for a line is cut)."""
    lines: list[str] = []
    for word in _safe(text, font).split():
        if lines and _text_w(lines[-1] + " " + word, font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(_fit(word, font, width))
    return lines


# ----------------------------------------------------------------------------- arrays


def to_uint8_rgb(x: Any) -> np.ndarray:
    """An image as an H×W×3 uint8 array.

    Accepts a torch tensor or a numpy array: H×W×3 (or ×4, alpha dropped; or ×1), H×W grey, or
    C×H×W with C in (1, 3); a leading batch dimension of 1 is dropped. Floats are taken as [0, 1]
    and clipped; other integers are clipped to [0, 255]; booleans become 0/255.

    Args:
        x: the image.
    """
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an H×W, H×W×C or C×H×W image, got shape {a.shape}")
    is_float = np.issubdtype(a.dtype, np.floating)
    if a.ndim == 2:
        a = a[..., None]
    elif a.shape[0] in (1, 3) and (a.shape[-1] not in (1, 3, 4) or is_float):
        # float C×H×W is the tensor convention; integers are H×W×C unless only C×H×W fits
        a = np.moveaxis(a, 0, -1)
    elif a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot tell the channel axis of an image of shape {a.shape}")
    if a.shape[-1] == 4:
        a = a[..., :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif is_float:
        a = np.round(np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255)
    return np.ascontiguousarray(a.astype(np.uint8))


# ----------------------------------------------------------------------------- grids


def _placeholder(size: tuple[int, int], text: str) -> Image.Image:
    """A grey panel of ``size`` (w, h) with ``text`` centred, wrapped to fit."""
    img = Image.new("RGB", size, PLACEHOLDER_GREY)
    draw = ImageDraw.Draw(img)
    font = _font(12)
    lines = _wrap(text, font, max(size[0] - 8, 8))
    lh = _line_h(font)
    y = (size[1] - lh * len(lines)) / 2
    for line in lines:
        draw.text((size[0] / 2, y), line, font=font, fill=PLACEHOLDER_TEXT, anchor="ma")
        y += lh
    return img


def panel_grid(panels: Sequence[tuple[str, np.ndarray | str | None]], cols: int,
               title: str | None = None, placeholder: str = "no ground truth") -> Image.Image:
    """Panels in a grid, row by row, each with its caption above it (layout in the module doc).

    Args:
        panels: (caption, image) pairs; an image is H×W×3 uint8 (anything :func:`to_uint8_rgb`
            takes), None for a grey placeholder saying ``placeholder``, or a string for a grey
            placeholder saying that string. Cells are sized to the largest panel.
        cols: panels per row.
        title: drawn centred above the grid when given.
        placeholder: the text of None panels.
    """
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    if not panels:
        raise ValueError("panel_grid needs at least one panel")
    images = [None if img is None or isinstance(img, str) else to_uint8_rgb(img)
              for _, img in panels]
    shapes = [im.shape[:2] for im in images if im is not None]
    cell_w = max((w for _, w in shapes), default=DEFAULT_CELL[0])
    cell_h = max((h for h, _ in shapes), default=DEFAULT_CELL[1])
    captions = [c for c, _ in panels]
    cap_h, top = caption_height(captions), title_height(title)
    rows = math.ceil(len(panels) / cols)
    width = cols * cell_w + (cols + 1) * MARGIN
    height = top + rows * (cap_h + cell_h) + (rows + 1) * MARGIN
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((width / 2, MARGIN), _fit(title, _font(15), width - 2 * MARGIN), font=_font(15),
                  fill=TEXT, anchor="ma")
    font = _font(12)
    for i, ((caption, raw), img) in enumerate(zip(panels, images)):
        r, c = divmod(i, cols)
        x = MARGIN + c * (cell_w + MARGIN)
        y = top + MARGIN + r * (cap_h + cell_h + MARGIN)
        if caption:
            draw.text((x + cell_w / 2, y + 2), _fit(caption, font, cell_w), font=font, fill=TEXT,
                      anchor="ma")
        y += cap_h
        if img is None:
            # a placeholder fills its cell, so missing panels read as the same size as the rest
            text = raw if isinstance(raw, str) else placeholder
            canvas.paste(_placeholder((cell_w, cell_h), text), (x, y))
        else:
            h, w = img.shape[:2]
            canvas.paste(Image.fromarray(img), (x + (cell_w - w) // 2, y + (cell_h - h) // 2))
    return canvas


def seed_figure(rgb: Any, pred_edge: Any, gt_seg: Any, gt_depth: Any, pred_seg: Any,
                pred_depth: Any, title: str | None = None) -> Image.Image:
    """The seed paper's qualitative figure: 2 rows × 3 columns.

    Row 1: RGB, GT segmentation, predicted segmentation; row 2: predicted edges, GT depth,
    predicted depth (so each column pairs RGB/edges, GT seg/depth, predicted seg/depth).

    Args:
        rgb: the input image, H×W×3 uint8 (or anything :func:`to_uint8_rgb` takes).
        pred_edge: coloured edge prediction, or None if edges were not trained.
        gt_seg: coloured segmentation ground truth, or None when there is none.
        gt_depth: coloured depth ground truth, or None when there is none.
        pred_seg: coloured segmentation prediction, or None if segmentation was not trained.
        pred_depth: coloured depth prediction, or None if depth was not trained.
        title: optional title above the grid.
    """
    def gt(x: Any) -> Any:
        return "no ground truth" if x is None else x

    def pred(x: Any) -> Any:
        return "not trained" if x is None else x

    return panel_grid([("RGB", "no image" if rgb is None else rgb),
                       ("GT seg", gt(gt_seg)),
                       ("predicted seg", pred(pred_seg)),
                       ("predicted edges", pred(pred_edge)),
                       ("GT depth", gt(gt_depth)),
                       ("predicted depth", pred(pred_depth))], cols=3, title=title)


# ----------------------------------------------------------------------------- attention

# heat ramp stops (value, colour): blue → purple → red → yellow; red minus blue rises throughout
_HEAT = np.array([[0.0, 0, 0, 200], [0.4, 100, 0, 160], [0.7, 230, 40, 40], [1.0, 255, 230, 0]])


def heat_colors(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) → the heat ramp's colours (shape + (3,), float 0–255).

    Args:
        v: values, clipped to [0, 1].
    """
    v = np.clip(v, 0.0, 1.0)
    return np.stack([np.interp(v, _HEAT[:, 0], _HEAT[:, k]) for k in (1, 2, 3)], axis=-1)


def _draw_cross(img: Image.Image, query: tuple[int, int], arm: int = 5) -> None:
    """A green cross with a dark outline centred on ``query`` = (row, col)."""
    y, x = query
    draw = ImageDraw.Draw(img)
    for colour, width in (((0, 0, 0), 3), (CROSS, 1)):
        draw.line([(x - arm, y), (x + arm, y)], fill=colour, width=width)
        draw.line([(x, y - arm), (x, y + arm)], fill=colour, width=width)


def attention_figure(rgb: Any, maps: Sequence[tuple[str, np.ndarray]],
                     query: tuple[int, int] | None = None, title: str | None = None,
                     alpha: float = 0.6) -> Image.Image:
    """One row: the RGB image, then each attention map as heat blended over it.

    Each map (one query's weights over the key grid, any small h×w) is scaled to [0, 1] by its
    own min and max, upsampled bilinearly to the RGB size and drawn with a blue→red→yellow ramp
    (yellow = most attended) at opacity ``alpha`` over the RGB.

    Args:
        rgb: the input image, H×W×3 uint8 (or anything :func:`to_uint8_rgb` takes).
        maps: (caption, h×w attention weights) pairs.
        query: the query pixel as (row, col) in RGB pixel coordinates, marked with a green cross
            on every panel; None draws no cross.
        title: optional title above the row.
        alpha: opacity of the heat over the RGB.
    """
    base = to_uint8_rgb(rgb)
    h, w = base.shape[:2]
    panels: list[Image.Image] = [Image.fromarray(base)]
    for _, m in maps:
        m = np.nan_to_num(np.asarray(m, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if m.ndim != 2:
            raise ValueError(f"an attention map must be h×w, got shape {m.shape}")
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        up = np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.BILINEAR))
        blended = (1 - alpha) * base.astype(np.float64) + alpha * heat_colors(up)
        panels.append(Image.fromarray(np.round(blended).clip(0, 255).astype(np.uint8)))
    if query is not None:
        for p in panels:
            _draw_cross(p, query)
    return panel_grid([("RGB", np.asarray(panels[0]))]
                      + [(cap, np.asarray(p)) for (cap, _), p in zip(maps, panels[1:])],
                      cols=len(panels), title=title)


# ----------------------------------------------------------------------------- line plots


def nice_ticks(lo: float, hi: float, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi]: 4–6 of them when a 1/2/2.5/5 × 10^k step allows.

    The axis then runs from the first tick to the last. An empty range is widened around its
    value first.

    Args:
        lo: smallest value to cover.
        hi: largest value to cover.
        integer: only whole-number steps (epochs); may give fewer than 4 ticks on short ranges.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        # a constant: a visible band around it
        pad = 1.0 if integer else (abs(lo) * 0.1 if lo != 0 else 1.0)
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    k0 = math.floor(math.log10(span / 5))
    best: tuple[tuple[float, int], list[float]] | None = None
    fallback: tuple[float, list[float]] | None = None
    for k in (k0 - 1, k0, k0 + 1, k0 + 2):
        for mant in (1.0, 2.0, 2.5, 5.0):
            step = mant * 10.0 ** k
            if integer and (step < 1 or step != round(step)):
                continue
            t0 = math.floor(lo / step + 1e-9)
            t1 = math.ceil(hi / step - 1e-9)
            ticks = [round(t * step, 12) for t in range(t0, t1 + 1)]
            n = len(ticks)
            if 4 <= n <= 6:
                key = ((t1 - t0) * step, abs(n - 5))
                if best is None or key < best[0]:
                    best = (key, ticks)
            elif n < 4 and (fallback is None or step < fallback[0]):
                fallback = (step, ticks)
    if best is not None:
        return best[1]
    assert fallback is not None
    return fallback[1]


def format_ticks(ticks: Sequence[float]) -> list[str]:
    """Tick labels with the fewest decimals that tell every tick apart exactly.

    Args:
        ticks: tick values.
    """
    big = max((abs(t) for t in ticks), default=0.0)
    if big >= 1e5 or (0 < big < 1e-3):
        # 3e5 rather than 3e+05: shorter, and as readable
        return [f"{t:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
                for t in ticks]
    step = min((abs(b - a) for a, b in zip(ticks, ticks[1:])), default=1.0) or 1.0
    for d in range(10):
        if all(abs(round(t, d) - t) < step * 1e-6 for t in ticks):
            break
    return [f"{t:.{d}f}" if abs(round(t, d)) > 0 else f"{0:.{d}f}" for t in ticks]


def _finite_pairs(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive points with finite x and y (a non-finite point breaks the line)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys):
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            x = y = math.nan
        if math.isfinite(x) and math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _vertical_text(text: str, font: Any, fill: tuple[int, int, int]) -> Image.Image:
    """``text`` rotated to read bottom to top, as an RGBA image."""
    w, h = max(_text_w(text, font), 1), _line_h(font)
    mask = Image.new("L", (w + 2, h), 0)
    ImageDraw.Draw(mask).text((1, 0), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    out = Image.new("RGBA", mask.size, fill + (0,))
    out.putalpha(mask)
    return out


def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
              xlabel: str, ylabel: str, marks: Mapping[str, tuple[float, float]] | None = None,
              size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A line chart: boxed axes with round ticks, one colour per series, a legend below.

    Series i is drawn in ``PALETTE[i % 10]`` with 2 px lines (and dots on each point when there
    are few, so a single point shows); non-finite points are skipped and break the line. Marks
    are black dots labelled with their name. When every x is a whole number the x ticks are too.

    Args:
        series: name → (xs, ys).
        title: drawn above the plot.
        xlabel: x axis label.
        ylabel: y axis label, drawn vertically.
        marks: name → (x, y) points to mark, e.g. the best epoch; non-finite ones are skipped.
        size: image (width, height) in pixels.
    """
    W, H = size
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    font, tfont = _font(12), _font(14)
    lh, pad = _line_h(font), 6

    runs = {name: _finite_pairs(xs, ys) for name, (xs, ys) in series.items()}
    points = [p for rs in runs.values() for r in rs for p in r]
    mark_pts = [(n, (_number(x), _number(y))) for n, (x, y) in (marks or {}).items()
                if math.isfinite(_number(x)) and math.isfinite(_number(y))]
    points += [p for _, p in mark_pts]
    all_x = [x for x, _ in points] or [0.0, 1.0]
    all_y = [y for _, y in points] or [0.0, 1.0]
    integer_x = bool(points) and all(float(x).is_integer() for x in all_x)
    xt = nice_ticks(min(all_x), max(all_x), integer=integer_x)
    yt = nice_ticks(min(all_y), max(all_y))
    xl, yl = format_ticks(xt), format_ticks(yt)

    # legend: entries flow left to right under the x label, wrapping to new lines
    entries = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)]
    swatch, gap = 18, 14
    legend_lines: list[list[tuple[str, tuple[int, int, int], int]]] = []
    line_w = W + 1
    for name, colour in entries:
        label = _fit(str(name), font, W - 2 * pad - swatch - 4)
        ew = swatch + 4 + _text_w(label, font)
        if line_w + gap + ew > W - 2 * pad:
            legend_lines.append([])
            line_w = -gap
        legend_lines[-1].append((label, colour, ew))
        line_w += gap + ew
    legend_h = len(legend_lines) * lh

    # plot box
    top = pad + _line_h(tfont) + lh // 2 + 2
    bottom = H - pad - legend_h - (4 if legend_h else 0) - lh - lh - 5
    left = pad + lh + 4 + max(_text_w(s, font) for s in yl) + 6
    right = W - pad - max(_text_w(xl[-1], font) // 2, 4)
    if right - left < 2 * INSET + 20 or bottom - top < 2 * INSET + 20:
        raise ValueError(f"plot size {size} is too small for its labels")

    # the extreme ticks sit INSET px inside the box, so data there does not hide under its edge
    def px(x: float) -> float:
        return left + INSET + (x - xt[0]) / (xt[-1] - xt[0]) * (right - left - 2 * INSET)

    def py(y: float) -> float:
        return bottom - INSET - (y - yt[0]) / (yt[-1] - yt[0]) * (bottom - top - 2 * INSET)

    draw.text((W / 2, pad), _fit(title, tfont, W - 2 * pad), font=tfont, fill=TEXT, anchor="ma")
    for t, s in zip(xt, xl):
        x = px(t)
        draw.line([(x, top), (x, bottom)], fill=GRID)
        draw.line([(x, bottom), (x, bottom + 4)], fill=TEXT)
        draw.text((x, bottom + 5), s, font=font, fill=TEXT, anchor="ma")
    for t, s in zip(yt, yl):
        y = py(t)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.line([(left - 4, y), (left, y)], fill=TEXT)
        draw.text((left - 6, y), s, font=font, fill=TEXT, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=TEXT)
    draw.text(((left + right) / 2, bottom + 5 + lh), _fit(xlabel, font, W - 2 * pad), font=font,
              fill=TEXT, anchor="ma")
    ylab = _vertical_text(_fit(ylabel, font, bottom - top), font, TEXT)
    img.paste(ylab, (pad, int((top + bottom) / 2 - ylab.height / 2)), ylab)

    if not points:
        draw.text(((left + right) / 2, (top + bottom) / 2), "no data", font=font,
                  fill=PLACEHOLDER_TEXT, anchor="mm")
    for (name, colour), rs in zip(entries, runs.values()):
        n_points = sum(len(r) for r in rs)
        for r in rs:
            xy = [(px(x), py(y)) for x, y in r]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2, joint="curve")
            if n_points <= 30 or len(xy) == 1:
                for x, y in xy:
                    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for name, (mx, my) in mark_pts:
        x, y = px(mx), py(my)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=MARK, outline=BACKGROUND)
        label = _fit(str(name), font, right - left - 16)
        tw = _text_w(label, font)
        # label right of the dot unless it would leave the box; above unless at the top
        tx = x + 7 if x + 7 + tw <= right - 2 else x - 7 - tw
        ty = y - 7 - lh if y - 7 - lh >= top + 2 else y + 6
        draw.rectangle([tx - 1, ty, tx + tw + 1, ty + lh - 1], fill=BACKGROUND)
        draw.text((tx, ty), label, font=font, fill=TEXT)

    y = H - pad - legend_h
    for line in legend_lines:
        total = sum(ew for _, _, ew in line) + gap * (len(line) - 1)
        x = (W - total) / 2
        for label, colour, ew in line:
            draw.line([(x, y + lh / 2), (x + swatch, y + lh / 2)], fill=colour, width=3)
            draw.text((x + swatch + 4, y), label, font=font, fill=TEXT)
            x += ew + gap
        y += lh
    return img


# ----------------------------------------------------------------------------- training curves


def _number(v: Any) -> float:
    """``v`` as a float, NaN when it is missing or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _val_entry(record: Mapping, task: str) -> Mapping:
    """A record's validation results for ``task`` as a dict (a bare number is its loss)."""
    v = (record.get("val") or {}).get(task)
    if isinstance(v, Mapping):
        return v
    return {} if v is None else {"loss": v}


def _tasks(records: Sequence[Mapping]) -> list[str]:
    """Task names in the log, the known ones first in their usual order, "total" left out."""
    seen: list[str] = []
    for rec in records:
        for part in ("train", "val"):
            for name in rec.get(part) or {}:
                if name != "total" and name not in seen:
                    seen.append(name)
    return [t for t in _KNOWN_ORDER if t in seen] + [t for t in seen if t not in _KNOWN_ORDER]


def _key_metric(records: Sequence[Mapping], task: str) -> str | None:
    """The task's key validation metric if logged, else its first non-loss metric, else None."""
    names: list[str] = []
    for rec in records:
        for name in _val_entry(rec, task):
            if name != "loss" and name not in names:
                names.append(name)
    preferred = KEY_METRIC.get(task)
    if preferred in names:
        return preferred
    return names[0] if names else None


def training_curves(records: Sequence[Mapping], title: str | None = None,
                    size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A run's curves from its ``log.jsonl`` records: one row of two plots per task.

    Left: train and validation loss per epoch; right: the task's key validation metric (depth
    rmse, seg miou, edge ods, otherwise the first non-loss metric logged; an empty plot saying
    "no data" when there is none). The best epoch (the last record with ``"best": true``) is
    marked on both. Tasks are those in the records' ``train``/``val`` (``total`` left out).
    The image is ``panel_grid`` of the plots with 2 columns and no captions.

    Args:
        records: the log's records, each with ``epoch``, ``train`` {task: loss}, ``val``
            {task: {metric: value}}, optionally ``best``.
        title: optional title above the grid.
        size: each plot's (width, height).
    """
    if not records:
        raise MtlbenchError("no epochs logged yet: nothing to plot")
    tasks = _tasks(records)
    if not tasks:
        raise MtlbenchError("the log has no per-task losses or metrics to plot")
    epochs = [_number(rec.get("epoch", i + 1)) for i, rec in enumerate(records)]
    best_i = max((i for i, rec in enumerate(records) if rec.get("best") is True), default=None)

    def mark(ys: list[float]) -> dict[str, tuple[float, float]]:
        if best_i is None or not math.isfinite(ys[best_i]):
            return {}
        return {f"best (epoch {epochs[best_i]:g})": (epochs[best_i], ys[best_i])}

    plots: list[tuple[str, np.ndarray]] = []
    for task in tasks:
        train = [_number((rec.get("train") or {}).get(task)) for rec in records]
        val = [_number(_val_entry(rec, task).get("loss")) for rec in records]
        series = {"train": (epochs, train), "val": (epochs, val)}
        best = mark(val) or mark(train)
        plots.append(("", np.asarray(line_plot(series, f"{task} loss", "epoch", "loss", best,
                                               size=size))))
        metric = _key_metric(records, task)
        ys = [_number(_val_entry(rec, task).get(metric)) for rec in records] if metric else []
        name = metric or "metric"
        plots.append(("", np.asarray(line_plot({f"val {name}": (epochs, ys)} if metric else {},
                                               f"{task} {name} (val)", "epoch", name, mark(ys)
                                               if metric else None, size=size))))
    return panel_grid(plots, cols=2, title=title)


# ----------------------------------------------------------------------------- files


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a PNG at ``path`` atomically (missing parent folders are created).

    It goes to a hidden temporary file in the same folder, then ``os.replace`` puts it in place,
    so readers never see a partial file; on any error the temporary file is removed and the error
    raised.

    Args:
        image: the image.
        path: where to write it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: image.save(f, format="PNG"))
