"""Single-core throughput of the synthrooms renderer.

Usage:
    python benchmarks/bench_synthrooms.py [--frames 1449] [--size 256 | --size 240x320] [--holes]
        [--check]

Prints the measured rate and the time the NYU Depth V2 labelled set's 1449 frames take.
"""

from __future__ import annotations

import os

# One thread for every BLAS / OpenMP pool numpy might use; must be set before numpy loads.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtlbench.data.synthrooms import render_scene  # noqa: E402

NYU_LABELLED_FRAMES = 1449
TARGET_IMG_PER_S = 50.0
WARMUP_FRAMES = 3


def _parse_size(text: str) -> tuple[int, int]:
    """``256`` -> (256, 256); ``240x320`` -> (240, 320)."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"size must be S or HxW, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=NYU_LABELLED_FRAMES, help="frames to render")
    parser.add_argument(
        "--size", type=_parse_size, default=(256, 256), help="S or HxW (default 256)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holes", action="store_true", help="also simulate Kinect depth holes")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if below the target rate"
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")

    h, w = args.size
    for index in range(WARMUP_FRAMES):
        render_scene(args.seed, index, (h, w), holes=args.holes)
    start, start_cpu = time.perf_counter(), time.process_time()
    for index in range(args.frames):
        render_scene(args.seed, index, (h, w), holes=args.holes)
    elapsed = time.perf_counter() - start
    # CPU time of this (single-threaded) process: the one-core cost even on a busy machine
    elapsed_cpu = time.process_time() - start_cpu

    rate = args.frames / elapsed
    projected = NYU_LABELLED_FRAMES / rate
    holes = " with holes" if args.holes else ""
    print(
        f"synthrooms render{holes}: {args.frames} frames {h}x{w} in {elapsed:.2f} s "
        f"= {rate:.1f} img/s "
        f"(target >= {TARGET_IMG_PER_S:.0f} img/s at 256x256); {NYU_LABELLED_FRAMES} frames take "
        f"{projected:.1f} s"
    )
    print(f"  cpu time {elapsed_cpu:.2f} s = {args.frames / elapsed_cpu:.1f} img/s per core")
    return 1 if args.check and rate < TARGET_IMG_PER_S else 0


if __name__ == "__main__":
    sys.exit(main())
