"""Regenerate the NYUv2 facts shipped in this folder from the reference metadata.

Usage: ``python -m mtlbench.resources._generate [SHARED_DIR]`` (default ``../shared``), where
``SHARED_DIR/nyuv2_ref/meta`` holds the original ``.mat`` files and their plain-text copies.
The split indices are read from ``splits.mat`` itself (needs scipy, only for this script).
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared"))
