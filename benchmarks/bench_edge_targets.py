"""Which edge targets train better, scored against one-pixel BSDS boundaries with exact matching.

Trains the same edge model twice per seed through `mtlbench run`, once on targets marking both
sides of each label change (``data.edge_targets = "both_sides"``, two pixels wide) and once on
BSDS's one-sided boundaries (``"one_side"``), then reads the test split's odsF/oisF/AP, which the
run scores with exact one-to-one matching against one-pixel boundaries whatever it trained on.

    python benchmarks/bench_edge_targets.py                  # quick preset, hps, seeds 0 1 2
    python benchmarks/bench_edge_targets.py --seeds 0 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = ("both_sides", "one_side")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hps")
    ap.add_argument("--task", default="edge")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    scores: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for target in TARGETS:
                config = Path(tmp) / f"{target}.toml"
                config.write_text(f'preset = "quick"\n[data]\nedge_targets = "{target}"\n')
                run = Path(tmp) / f"{target}-{seed}"
                cmd = [sys.executable, "-m", "mtlbench", "run", "--model", args.model, "--task", args.task,
                       "--preset", "quick", "--config", str(config), "--epochs", str(args.epochs),
                       "--seed", str(seed), "--run-dir", str(run)]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                edge = json.loads((run / "metrics.json").read_text())["test"]["edge"]
                scores[target].append(edge)
                print(f"seed {seed} {target:10s} odsF {edge['ods']:.4f} oisF {edge['ois']:.4f} AP {edge['ap']:.4f}",
                      flush=True)
    print(f"\n{args.model} [{args.task}], quick preset, {args.epochs} epochs, seeds {args.seeds}; test split, "
          f"exact matching against one-pixel boundaries (mean ± std over seeds)")
    for target in TARGETS:
        line = "  ".join(f"{k} {statistics.mean(s[k] for s in scores[target]):.4f} ± "
                         f"{statistics.pstdev([s[k] for s in scores[target]]):.4f}" for k in ("ods", "ois", "ap"))
        print(f"{target:10s}  {line}")


if __name__ == "__main__":
    main()
