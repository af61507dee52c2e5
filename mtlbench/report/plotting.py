"""Generic plotting on matplotlib: image grids, line plots, and writing figures to files.

matplotlib is imported inside the functions that draw, never at module import: importing mtlbench
(``mtlbench --help``) must stay fast. Figures are plain :class:`matplotlib.figure.Figure` objects on
an Agg canvas (no pyplot, so no global figure state), at :data:`DPI` pixels per inch, so a figure
of ``w × h`` px saves as a PNG of exactly ``w × h`` pixels.

Grid layout (:func:`panel_grid`), every size in pixels::

    width  = cols × cell_w + (cols + 1) × MARGIN
    height = title_height(title) + rows × (caption_height(captions) + cell_h) + (rows + 1) × MARGIN

where ``cell_w``/``cell_h`` are the largest panel's width/height (panels are centred in their
cell, drawn one image pixel per figure pixel). The panel area of cell (row r, column c) starts at::

    x = MARGIN + c × (cell_w + MARGIN)
    y = title_height + MARGIN + r × (caption_h + cell_h + MARGIN) + caption_h
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mtlbench.fileio import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

DPI = 100
MARGIN = 8
CAPTION_H = 18  # px of the caption strip above each grid row
TITLE_H = 26  # px of a grid's title strip
CAPTION_PX, TITLE_PX = 12, 15  # font sizes in px
PLACEHOLDER_GREY = (200, 200, 200)
DEFAULT_CELL = (128, 96)  # placeholder cell (w, h) when a grid has no image at all
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
# dates left out of vector files, so the same figure gives the same bytes
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
# names of runs and metrics are plain text, never mathtext ("$" included)
STYLE: dict[Any, Any] = {"text.parse_math": False, "figure.facecolor": "white", "axes.grid": True,
                         "grid.color": "#e4e4e4"}


_F = TypeVar("_F", bound=Callable[..., Any])


def drawing(fn: _F) -> _F:
    """Decorator: ``fn`` draws under :data:`STYLE` (rcParams are read as artists are made)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def points(px: float) -> float:
    """``px`` pixels in typographic points at :data:`DPI`."""
    return px * 72.0 / DPI


def new_figure(width_px: int, height_px: int, **kwargs: Any) -> Figure:
    """An empty figure of ``width_px × height_px`` pixels on an Agg canvas.

    Args:
        width_px: width in pixels.
        height_px: height in pixels.
        kwargs: passed to :class:`matplotlib.figure.Figure` (``layout="constrained"``, say).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _agg(fig: Any) -> FigureCanvasAgg:
    """The Agg canvas :func:`new_figure` gave ``fig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        raise TypeError("expected a figure made by new_figure (on an Agg canvas)")
    return canvas


def render(fig: Figure) -> np.ndarray:
    """The figure drawn by Agg, as an H×W×3 uint8 array."""
    canvas = _agg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


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


def caption_height(captions: Sequence[str] = ("x",)) -> int:
    """Height of the caption strip above each grid row; 0 when every caption is empty."""
    return CAPTION_H if any(captions) else 0


def title_height(title: str | None) -> int:
    """Height of a grid's title strip (0 without a title)."""
    return TITLE_H if title else 0


def _shrink_to_fit(text: Text, width: float, height: float | None = None) -> None:
    """Scale ``text``'s font down until it fits ``width`` (and ``height``) pixels."""
    renderer = _agg(text.figure).get_renderer()
    for _ in range(4):  # glyph widths do not scale exactly with the size: measure again
        box = text.get_window_extent(renderer)
        scale = min(width / max(box.width, 1e-9),
                    1.0 if height is None else height / max(box.height, 1e-9))
        if scale >= 1.0:
            return
        text.set_fontsize(float(text.get_fontsize()) * scale * 0.98)


@drawing
def panel_grid(panels: Sequence[tuple[str, Any]], cols: int, title: str | None = None,
               placeholder: str = "no ground truth") -> Figure:
    """Panels in a grid, row by row, each with its caption above it (layout in the module doc).

    Captions and the title that would not fit their strip are drawn smaller. ``fig.axes[i]`` is
    panel i's axes, in image pixel coordinates, for drawing over it.

    Args:
        panels: (caption, image) pairs; an image is anything :func:`to_uint8_rgb` takes, None for
            a grey placeholder saying ``placeholder``, or a string for a grey placeholder saying
            that string. Cells are sized to the largest panel.
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
    cap_h, top = caption_height([c for c, _ in panels]), title_height(title)
    rows = math.ceil(len(panels) / cols)
    width = cols * cell_w + (cols + 1) * MARGIN
    height = top + rows * (cap_h + cell_h) + (rows + 1) * MARGIN
    fig = new_figure(width, height)

    def rect(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        """Pixel box, y down from the top, in figure fractions."""
        return (x / width, 1 - (y + h) / height, w / width, h / height)

    if title:
        t = fig.text(0.5, 1 - (MARGIN + top / 2) / height, title, ha="center", va="center",
                     fontsize=points(TITLE_PX))
        _shrink_to_fit(t, width - 2 * MARGIN, top)
    grey = tuple(c / 255 for c in PLACEHOLDER_GREY)
    for i, ((caption, raw), img) in enumerate(zip(panels, images)):
        r, c = divmod(i, cols)
        x = MARGIN + c * (cell_w + MARGIN)
        y = top + MARGIN + r * (cap_h + cell_h + MARGIN)
        if caption:
            t = fig.text((x + cell_w / 2) / width, 1 - (y + cap_h / 2) / height, caption,
                         ha="center", va="center", fontsize=points(CAPTION_PX))
            _shrink_to_fit(t, cell_w, cap_h)
        y += cap_h
        if img is None:
            # a placeholder fills its cell, so missing panels read as the same size as the rest
            ax = fig.add_axes(rect(x, y, cell_w, cell_h), facecolor=grey)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            text = raw if isinstance(raw, str) else placeholder
            # wrapped between words at an average glyph width, then shrunk if still too big
            lines = textwrap.fill(text, max(1, int(cell_w / (0.6 * CAPTION_PX))),
                                  break_long_words=False)
            t = ax.text(0.5, 0.5, lines, ha="center", va="center", transform=ax.transAxes,
                        color="#5a5a5a", fontsize=points(CAPTION_PX))
            _shrink_to_fit(t, cell_w - 4, cell_h - 4)
        else:
            h, w = img.shape[:2]
            ax = fig.add_axes(rect(x + (cell_w - w) // 2, y + (cell_h - h) // 2, w, h))
            ax.set_axis_off()
            # one image pixel per figure pixel; "none" keeps the raw pixels in PDF/SVG
            ax.imshow(img, interpolation="none", aspect="auto")
            ax.autoscale(False)  # drawing over the panel must not rescale it
        ax.set_label(caption)
    return fig


# ----------------------------------------------------------------------------- line plots


def _floats(values: Sequence[Any]) -> np.ndarray:
    """``values`` as float64, NaN where one is missing or not a number."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


@drawing
def draw_lines(ax: Axes, series: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], title: str,
               xlabel: str, ylabel: str, marks: Mapping[str, tuple[Any, Any]] | None = None) -> None:
    """Series as lines on ``ax``, with marks, a legend, and "no data" when nothing is finite.

    A non-finite point is skipped and breaks its line; series of up to 30 points get a dot on
    each point, so a lone point shows. Marks are black dots named in the legend; non-finite ones
    are skipped. When every x is a whole number the x ticks are too.

    Args:
        ax: the axes to draw on.
        series: name → (xs, ys).
        title: the axes title.
        xlabel: x axis label.
        ylabel: y axis label.
        marks: name → (x, y) points to mark, e.g. the best epoch.
    """
    from matplotlib.ticker import MaxNLocator

    xs_all: list[np.ndarray] = []
    for name, (xs, ys) in series.items():
        x, y = _floats(xs), _floats(ys)
        ok = np.isfinite(x) & np.isfinite(y)
        # NaN breaks a matplotlib line, so non-finite points become gaps
        x, y = np.where(ok, x, np.nan), np.where(ok, y, np.nan)
        ax.plot(x, y, label=str(name), marker="o" if ok.sum() <= 30 else None, markersize=3)
        xs_all.append(x[ok])
    for name, (mx, my) in (marks or {}).items():
        x, y = _floats([mx]), _floats([my])
        if np.isfinite(x[0]) and np.isfinite(y[0]):
            ax.plot(x, y, linestyle="none", marker="o", markersize=7, color="black",
                    markeredgecolor="white", label=str(name), zorder=3)
            xs_all.append(x)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    finite_x = np.concatenate(xs_all) if xs_all else np.zeros(0)
    if not finite_x.size:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color="#5a5a5a",
                transform=ax.transAxes)
    elif np.all(finite_x == np.round(finite_x)):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


@drawing
def line_plot(series: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], title: str,
              xlabel: str, ylabel: str, marks: Mapping[str, tuple[Any, Any]] | None = None,
              size: tuple[int, int] = (480, 320)) -> Figure:
    """One line chart (:func:`draw_lines`) as a figure of ``size`` (width, height) pixels."""
    fig = new_figure(*size, layout="constrained")
    draw_lines(fig.add_subplot(), series, title, xlabel, ylabel, marks)
    return fig


# ----------------------------------------------------------------------------- files


def save_figure(figure: Any, path: Path, format: str | None = None) -> None:
    """Write a figure to ``path`` atomically (missing parent folders are created).

    A matplotlib figure is written as PNG, PDF or SVG, from ``path``'s suffix unless ``format``
    names one; a PIL image only as PNG. The file is written to a hidden temporary sibling and
    renamed into place (:func:`mtlbench.fileio.atomic_write`), so readers never see a partial
    file; on any error nothing is left and the error is raised.

    Args:
        figure: a :class:`matplotlib.figure.Figure` or a PIL image.
        path: where to write it.
        format: "png", "pdf" or "svg"; None: from the suffix.
    """
    path = Path(path)
    fmt = format or FORMATS.get(path.suffix.lower(), "")
    if fmt not in FORMATS.values():
        raise ValueError(f"cannot tell the figure format of {path.name}: use a suffix of "
                         f"{', '.join(FORMATS)} (or name the format)")
    is_figure = hasattr(figure, "savefig")
    if not is_figure and fmt != "png":
        raise ValueError(f"an image is saved as PNG only, not {fmt} ({path.name})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_figure:
        import matplotlib

        def write(f: Any) -> None:
            # a fixed salt: SVG ids are otherwise random on every save
            with matplotlib.rc_context({"svg.hashsalt": "mtlbench"}):
                figure.savefig(f, format=fmt, dpi=DPI, facecolor="white",
                               metadata=_NO_DATE.get(fmt))
        atomic_write(path, write)
    else:
        atomic_write(path, lambda f: figure.save(f, format="PNG"))


def save_png(image: Any, path: Path) -> None:
    """:func:`save_figure` as PNG, whatever ``path``'s suffix."""
    save_figure(image, path, format="png")
