"""Weighting methods side by side: each trained with several seeds through ``mtlbench run``, with
single-task references for Δm, as a Markdown table (mean ± std over seeds).

    python benchmarks/weighting_table.py --out runs/weightings            # train what is missing, print
    python benchmarks/weighting_table.py --out runs/weightings --report   # only print

Each (method, seed) is an ordinary run directory under ``--out``; a finished one (``metrics.json``)
is not trained again, so an interrupted sweep continues where it stopped. Δm (MTI-Net's variant:
each task's key metric) is computed per seed against the single-task references averaged over
their seeds, then averaged; its std is over the seeds. Until ``mtlbench ablate`` exists this script
is the sweep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from mtlbench.report.results import delta_m, flat

METHODS = ["fixed", "uncertainty", "dwa", "rlw", "famo", "pcgrad", "mgda_ub", "upgrad"]
TASKS = ["depth", "seg", "edge"]
COLUMNS = [("depth/rmse", "depth RMSE ↓"), ("depth/dbe_acc", "depth DBE acc ↓"), ("seg/miou", "seg mIoU ↑"),
           ("edge/ods", "edge odsF ↑")]


def run(out: Path, name: str, args: list[str]) -> Path:
    run_dir = out / name
    if (run_dir / "metrics.json").is_file():
        return run_dir
    # an interrupted run continues from its own config.toml
    cmd = ["mtlbench", "run", "--run-dir", str(run_dir), *(["--resume"] if (run_dir / "last.pt").is_file()
                                                              else [*args, "--overwrite"])]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        print(f"{name} failed (exit {done.returncode}); the others go on", file=sys.stderr)
    return run_dir


def test_metrics(run_dir: Path) -> dict[str, float] | None:
    path = run_dir / "metrics.json"
    return flat(json.loads(path.read_text())["test"]) if path.is_file() else None


def mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--report", action="store_true", help="print the table of the finished runs, train nothing")
    a = ap.parse_args()
    base = ["--preset", a.preset, "--task", ",".join(TASKS)]
    if not a.report:
        for seed in a.seeds:
            for task in TASKS:
                run(a.out, f"single_{task}_s{seed}", ["--preset", a.preset, "--task", task, "--seed", str(seed)])
            for method in a.methods:
                run(a.out, f"{method}_s{seed}", [*base, "--weighting", method, "--seed", str(seed)])
    singles: dict[str, list[float]] = {}
    for task in TASKS:
        for seed in a.seeds:
            m = test_metrics(a.out / f"single_{task}_s{seed}")
            for k, v in (m or {}).items():
                if k.startswith(task + "/"):
                    singles.setdefault(k, []).append(v)
    reference = {k: statistics.fmean(v) for k, v in singles.items()}
    digits = {"depth/rmse": 4, "depth/dbe_acc": 3, "seg/miou": 4, "edge/ods": 4}
    header = ["method", *(label for _, label in COLUMNS), "Δm % (mti) ↑", "seeds"]
    print(f"\npreset {a.preset}, synthrooms, test split; mean ± std over seeds {a.seeds}; Δm against the "
          f"single-task runs of the same preset (mean over the same seeds)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = [("single-task", [a.out / f"single_{t}_s{s}" for t in TASKS for s in a.seeds])]
    rows += [(m, [a.out / f"{m}_s{s}" for s in a.seeds]) for m in a.methods]
    for name, dirs in rows:
        results = [r for r in (test_metrics(d) for d in dirs) if r is not None]
        cells = [mean_std([r[k] for r in results if k in r], digits[k]) for k, _ in COLUMNS]
        if name == "single-task":
            cells.append("0")
            count = f"{len(results) // len(TASKS)}/{len(a.seeds)}"
        else:
            deltas = [d for d in (delta_m(r, reference, TASKS, "mti") for r in results) if d is not None]
            cells.append(mean_std(deltas, 2) if reference else "–")
            count = f"{len(results)}/{len(a.seeds)}"
        print("| " + " | ".join([name, *cells, count]) + " |")


if __name__ == "__main__":
    main()
