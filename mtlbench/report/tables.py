"""Result tables and their output formats: rich, Markdown, LaTeX, CSV and JSON.

A :class:`TableData` holds already formatted cells, so every format prints the same digits; the
JSON output also carries the raw numbers when a table was built with them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

FORMATS = ("rich", "md", "latex", "csv", "json")


@dataclass
class TableData:
    title: str
    caption: str
    columns: list[str]
    rows: list[list[str]]
    sections: list[int] = field(default_factory=list)  # row indices preceded by a rule
    raw: list[dict[str, Any]] = field(default_factory=list)  # per row, unformatted values (JSON)
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of cells to stress (the best)


def to_rich(data: TableData, columns: Sequence[int] | None = None, title: str | None = None,
            caption: str | None = None) -> Table:
    """A rich table of ``data``, or of the column indices ``columns`` (the first column always)."""
    keep = [0] + [i for i in (columns if columns is not None else range(1, len(data.columns))) if i != 0]
    # cells are text, not rich markup: "[depth,seg]" must print as such
    table = Table(title=escape(data.title if title is None else title),
                  caption=escape(data.caption if caption is None else caption), caption_justify="left")
    for i in keep:
        # numbers never wrap; long text (a source, a path) folds instead of being cut to "…"
        numeric = 0 < i and bool(data.rows) and all(_is_number(r[i]) for r in data.rows)
        table.add_column(escape(data.columns[i]), justify="right" if numeric else "left", overflow="fold",
                         no_wrap=numeric)
    for r, row in enumerate(data.rows):
        if r in data.sections:
            table.add_section()
        table.add_row(*(f"[bold]{escape(row[i])}[/bold]" if (r, i) in data.bold else escape(row[i]) for i in keep))
    return table


def to_rich_fitted(data: TableData, width: int) -> list[Table]:
    """``data`` as one or more rich tables no wider than ``width``: when the columns do not fit,
    they continue in further tables that repeat the first column (no number is ever cut)."""
    def natural(i: int) -> int:
        return max([len(data.columns[i])] + [len(r[i]) for r in data.rows]) + 3  # padding and rule

    first = natural(0)
    chunks: list[list[int]] = [[]]
    used = first
    for i in range(1, len(data.columns)):
        need = min(natural(i), max(12, width // 3))  # long text columns fold to a third of the width
        if chunks[-1] and used + need > width:
            chunks.append([])
            used = first
        chunks[-1].append(i)
        used += need
    tables = []
    for n, cols in enumerate(chunks):
        title = data.title if n == 0 else f"(continued {n + 1}/{len(chunks)})"
        tables.append(to_rich(data, cols, title=title, caption=data.caption if n == len(chunks) - 1 else ""))
    return tables


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace("–", "0"))
        return True
    except ValueError:
        return False


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(tables: Sequence[TableData]) -> str:
    """The tables as Markdown: a title line, the table, the caption in italics."""
    out = []
    for t in tables:
        out.append(f"**{_md_cell(t.title)}**\n")
        out.append("| " + " | ".join(_md_cell(c) for c in t.columns) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(t.columns) - 1)) + "|")
        for r, row in enumerate(t.rows):
            out.append("| " + " | ".join(f"**{_md_cell(c)}**" if (r, i) in t.bold else _md_cell(c)
                                         for i, c in enumerate(row)) + " |")
        out.append(f"\n*{_md_cell(t.caption)}*\n")
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "δ": r"$\delta$", "Δ": r"$\Delta$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "²": r"$^2$",
                  "³": r"$^3$", "×": r"$\times$", "±": r"$\pm$", "†": r"$^\dagger$", "–": "--", "—": "---"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(tables: Sequence[TableData]) -> str:
    """Each table as a ``table`` float with ``booktabs`` rules (needs ``\\usepackage{booktabs}``)."""
    out = []
    for t in tables:
        spec = "l" + "r" * (len(t.columns) - 1)
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(t.title)}. {latex_escape(t.caption)}}}",
                rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                " & ".join(latex_escape(c) for c in t.columns) + r" \\", r"\midrule"]
        for i, row in enumerate(t.rows):
            if i in t.sections and i:
                out.append(r"\midrule")
            out.append(" & ".join(rf"\textbf{{{latex_escape(c)}}}" if (i, j) in t.bold else latex_escape(c)
                                  for j, c in enumerate(row)) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_csv(tables: Sequence[TableData]) -> str:
    """One CSV block per table: a ``# title`` line, the header, the rows; tables apart by a blank line."""
    buf = io.StringIO()
    for n, t in enumerate(tables):
        if n:
            buf.write("\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([f"# {t.title}"])  # quoted when it holds commas, so a CSV reader keeps it whole
        if t.caption:
            w.writerow([f"# {t.caption}"])  # the caveats travel with the numbers
        w.writerow(t.columns)
        w.writerows(t.rows)
    return buf.getvalue()


def to_json(tables: Sequence[TableData]) -> str:
    return json.dumps([{"title": t.title, "caption": t.caption, "columns": t.columns, "rows": t.rows,
                        **({"values": t.raw} if t.raw else {})} for t in tables], indent=2) + "\n"


def render(tables: Sequence[TableData], fmt: str) -> str:
    """The tables in a text format (``md``, ``latex``, ``csv`` or ``json``)."""
    writers = {"md": to_markdown, "latex": to_latex, "csv": to_csv, "json": to_json}
    if fmt not in writers:
        raise MtlbenchError(f"unknown table format {fmt!r}: choose from {', '.join(FORMATS)}")
    return writers[fmt](tables)


def check_writable(path: Path, option: str = "file") -> None:
    """Fail early, before any work, if ``path`` cannot be written; ``option`` names it in messages."""
    if path.is_dir():
        raise MtlbenchError(f"{option} {path} is a directory: pass a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise MtlbenchError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise MtlbenchError(f"{option} {path} is not writable: choose another file")


def write_atomic(path: Path, text: str, option: str = "file") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    check_writable(path, option)
    try:
        atomic_write(path, lambda f: f.write(text), mode="w")
    except OSError as exc:
        raise MtlbenchError(f"{option} {path} cannot be written: {exc.strerror or exc}") from None
