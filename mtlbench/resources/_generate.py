"""Regenerate the facts shipped in this folder from the reference material.

Usage: ``python -m mtlbench.resources._generate [SHARED_DIR]`` (default ``../shared``), where
``SHARED_DIR/nyuv2_ref/meta`` holds the original ``.mat`` files and their plain-text copies and
``SHARED_DIR/reference/baselines.md`` the published numbers. The split indices are read from
``splits.mat`` itself (needs scipy, only for this script).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(shared: Path) -> None:
    meta = shared / "nyuv2_ref" / "meta"
    if not meta.is_dir():
        raise SystemExit(f"no NYUv2 metadata at {meta}: pass the folder that holds nyuv2_ref/")
    from scipy.io import loadmat  # noqa: PLC0415 - generation-time only

    splits = loadmat(meta / "splits.mat")
    (HERE / "nyuv2_train_1based.txt").write_text(
        "\n".join(str(int(i)) for i in splits["trainNdxs"].ravel()) + "\n")
    (HERE / "nyuv2_test_1based.txt").write_text(
        "\n".join(str(int(i)) for i in splits["testNdxs"].ravel()) + "\n")
    map40 = loadmat(meta / "classMapping40.mat")["mapClass"].ravel()
    (HERE / "nyuv2_map894to40_1based.txt").write_text("\n".join(str(int(v)) for v in map40) + "\n")
    map13 = loadmat(meta / "class13Mapping.mat", simplify_cells=True)["classMapping13"]["labels13"]
    (HERE / "nyuv2_map40to13_1based.txt").write_text("\n".join(str(int(v)) for v in map13) + "\n")
    for n in (13, 40, 894):
        (HERE / f"nyuv2_names{n}.txt").write_text((meta / f"names{n}.txt").read_text())
    baselines = shared / "reference" / "baselines.md"
    rows = baseline_rows(baselines.read_text())
    (HERE / "baselines.json").write_text(json.dumps({"from": "reference/baselines.md", "rows": rows}, indent=1) + "\n")


def _tables(markdown: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every Markdown table as (the ``##`` section it sits in, rows keyed by header)."""
    section = ""
    out: list[tuple[str, list[dict[str, str]]]] = []
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in markdown.splitlines() + [""]:
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= set("-: ") for c in cells):
                rows.append(dict(zip(header, cells)))
            continue
        if header is not None:
            out.append((section, rows))
            header, rows = None, []
    return out


def _number(text: str) -> float | None:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*", text)
    return float(m.group(1)) if m else None


# Which protocol each section of baselines.md describes (its headings call Beneath the Surface "the
# seed paper"), and how its columns map onto mtlbench metric keys (with the factor that turns a
# percentage into a fraction).
SECTIONS = {
    "The seed paper": "beneath",
    "Multi-task NYUD-v2": "nyud-mt",
    "13-class NYUv2": "nyuv2-13-mtan",
    "Single-task monocular depth": "eigen-depth",
}
COLUMNS = {
    "nyud-mt": {"mIoU": ("seg/miou", 0.01), "RMSE": ("depth/rmse", 1.0), "normals": ("normals/mean", 1.0),
                "odsF": ("edge/ods", 0.01)},
    "nyuv2-13-mtan": {"mIoU": ("seg/miou", 0.01), "depth abs. err": ("depth/mae", 1.0)},
    "eigen-depth": {"δ1": ("depth/delta1_img", 1.0), "AbsRel": ("depth/abs_rel_img", 1.0),
                    "RMSE": ("depth/rmse_img", 1.0)},
}
BENEATH_DEPTH = {"MAE": "depth/mae_norm", "RMSE": "depth/rmse_norm"}
# rows read from their sources but not (yet) in baselines.md
EXTRA_ROWS = [
    {"protocol": "nyud-mt-4task", "model": "InvPT (released checkpoint)", "backbone": "ViT-L",
     "metrics": {"seg/miou": 0.5365, "depth/rmse": 0.5083, "normals/mean": 18.68, "edge/ods": 0.778},
     "source": "prismformore/Multi-Task-Transformer InvPT/README.md (\"reproduced results\")", "note": ""},
]


def baseline_rows(markdown: str) -> list[dict]:
    """The published rows of ``baselines.md``, one per method, with mtlbench metric keys."""
    rows: list[dict] = []
    for section, table in _tables(markdown):
        protocol = next((p for prefix, p in SECTIONS.items() if section.startswith(prefix)), None)
        if protocol is None or not table:
            continue
        if protocol == "beneath" and "metric" in table[0]:
            metrics: dict[str, float] = {}
            for r in table:
                name = r["metric"]
                if name in BENEATH_DEPTH:
                    metrics[BENEATH_DEPTH[name]] = float(r["value"])
                elif name.startswith("δ1"):  # its own, ambiguous δ: kept apart from the standard δ
                    for k, v in zip(("depth/delta1_beneath", "depth/delta2_beneath", "depth/delta3_beneath"),
                                    r["value"].split("/")):
                        metrics[k] = float(v)
            rows.append({"protocol": "beneath", "model": "seed paper (MTI-Net-style)", "backbone": "ResNet-50",
                         "metrics": metrics, "source": "the seed paper (Beneath the Surface), §6",
                         "note": "δ as the paper states them; its threshold wording is ambiguous"})
        elif protocol == "beneath":  # its Table 1: pixel accuracies, most compiled from other papers
            for r in table:
                own = r["method"].startswith("the seed")
                rows.append({
                    "protocol": "beneath" if own else "nyud-mt",
                    "model": "seed paper (MTI-Net-style)" if own else f"{r['method']} (via the seed's Table 1)",
                    "backbone": "ResNet-50" if own else "",
                    "metrics": {"seg/pixel_acc": float(r["pixel acc. %"]) / 100},
                    "source": "the seed paper, Table 1"
                              + ("" if own else " (compiled from Silberman et al. and PAP-Net)"),
                    "note": "" if own else "published on NYUv2 40 classes, 795/654 split"})
        else:
            previous = ""
            for r in table:
                name = r.get("model") or r.get("setup", "")
                metrics = {}
                for col, (key, f) in COLUMNS[protocol].items():
                    value = _number(r[col]) if col in r else None
                    if value is not None:
                        metrics[key] = round(value * f, 6)
                source = r.get("source", "")
                if source.startswith("same") and previous:  # "same README": name what it refers to
                    source = f"{source} as above ({previous})"
                else:
                    previous = source
                # a row with all four tasks' numbers was trained on all four: the four-task protocol
                four = protocol == "nyud-mt" and {"normals/mean", "edge/ods"} <= set(metrics)
                rows.append({"protocol": "nyud-mt-4task" if four else protocol, "model": name,
                             "backbone": r.get("backbone", ""), "metrics": metrics, "source": source, "note": ""})
    rows += EXTRA_ROWS
    # the paper's own numbers come from two tables: one row
    own_rows = [r for r in rows if r["protocol"] == "beneath"]
    if len(own_rows) > 1:
        for extra in own_rows[1:]:
            own_rows[0]["metrics"].update(extra["metrics"])
            own_rows[0]["source"] += "; " + extra["source"].replace("the seed paper, ", "")
            rows.remove(extra)
    return rows


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared"))
