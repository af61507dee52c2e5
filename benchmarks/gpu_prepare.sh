#!/usr/bin/env bash
# On a machine with network, from the repository root: the wheels benchmarks/gpu.sh installs on a
# GPU machine that has PyTorch (Python 3.12) but no network. They go to .whl/, which git ignores.
set -euo pipefail
git rev-parse --show-toplevel >/dev/null 2>&1 || { echo "run this from the repository root"; exit 2; }
py=${GPU_PYTHON_VERSION:-3.12}
mkdir -p .whl
exclude=$(git rev-parse --git-path info/exclude)
grep -qx "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl kornia kornia_rs segmentation-models-pytorch torchjd
# the weightings' solvers (mtlbench[solvers]) without what the GPU machine has (numpy, scipy) or what
# they never call there (scs: 43 MB)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 \
  -d .whl cvxpy clarabel ecos osqp qdldl highspy "sparsediffpy<0.7" quadprog qpsolvers jinja2 markupsafe joblib
ls .whl
