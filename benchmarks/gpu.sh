#!/usr/bin/env bash
# The GPU benchmark of docs/benchmarks.md, on one GPU, in about 8 minutes. From the repository root:
#   bash benchmarks/gpu_prepare.sh     # where there is network: wheels the GPU machine may lack
#   bash benchmarks/gpu.sh             # on the GPU machine; prints Markdown, keeps it in $OUT/gpu.md
# Stages have their own time limits; one that fails or runs out is reported and the next runs.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || { echo "gpu.sh: no CUDA GPU visible to torch (or no torch): this benchmark needs one" >&2; exit 1; }
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MTLBENCH_CACHE=${MTLBENCH_CACHE:-/tmp/mtlbench-cache}
log() { tee -a "$OUT/gpu.md"; }
: > "$OUT/gpu.md"
stage() {  # stage SECONDS TITLE COMMAND...: run, report its exit and wall time
  local limit=$1 title=$2; shift 2
  echo -e "\n### $title\n\n\`$*\`\n" | log
  local start; start=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | grep -v "^rendering synthrooms" | log
  local code=${PIPESTATUS[0]}
  echo -e "\n(exit $code, $(( $(date +%s) - start )) s wall, limit $limit s)" | log
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | log
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" | log

stage 130 "Training and evaluation throughput, eager" \
  python3 benchmarks/bench_gpu.py --modes fp32,bf16,bf16+cl
stage 270 "Seed protocol: mtinet, depth+seg+edge, 1449 synthrooms frames 256x256, 30 epochs, batch 8, bf16 + channels_last" \
  python3 -m mtlbench run --model mtinet --task depth,seg,edge --device cuda --precision bf16 --channels-last \
  --run-dir /tmp/seedrun --overwrite
cp /tmp/seedrun/metrics.json "$OUT/seed_metrics.json" 2>/dev/null
cp /tmp/seedrun/log.jsonl "$OUT/seed_log.jsonl" 2>/dev/null
stage 150 "Training throughput, torch.compile (reduce-overhead: CUDA graphs)" \
  python3 benchmarks/bench_gpu.py --modes bf16+cl+compile --models mtinet --batches 32,8 --compile-mode reduce-overhead --no-eval
