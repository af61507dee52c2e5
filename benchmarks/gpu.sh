#!/usr/bin/env bash
# The GPU benchmark of docs/benchmarks.md, on one GPU, in about 8 minutes. From the repository root:
#   bash benchmarks/gpu_prepare.sh     # where there is network: wheels the GPU machine may lack
#   bash benchmarks/gpu.sh             # on the GPU machine; prints Markdown, keeps it in $OUT/gpu.md
# Stages have their own time limits; one that fails or runs out is reported and the next runs.
# GPU_STAGES picks stages by name (default: all): throughput seed compile weightings sweep
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

STAGES=" ${GPU_STAGES:-throughput seed compile weightings sweep} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

if want throughput; then
stage 130 "Training and evaluation throughput, eager" \
  python3 benchmarks/bench_gpu.py --modes fp32,bf16,bf16+cl
fi
if want seed; then
stage 270 "The protocol of Beneath the Surface: mtinet, depth+seg+edge, 1449 synthrooms frames 256x256, 30 epochs, batch 8, bf16 + channels_last" \
  python3 -m mtlbench run --model mtinet --task depth,seg,edge --device cuda --precision bf16 --channels-last \
  --run-dir /tmp/seedrun --overwrite
cp /tmp/seedrun/metrics.json "$OUT/seed_metrics.json" 2>/dev/null
cp /tmp/seedrun/log.jsonl "$OUT/seed_log.jsonl" 2>/dev/null
fi
if want compile; then
stage 150 "Training throughput, torch.compile (reduce-overhead: CUDA graphs)" \
  python3 benchmarks/bench_gpu.py --modes bf16+cl+compile --models mtinet --batches 32,8 --compile-mode reduce-overhead --no-eval
fi
if want weightings; then
  # every registered method whose solver is installed here, one epoch each through the trainer
  missing=$(python3 -c "
import importlib.util as u
from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.gradient import EXTRAS
print(', '.join(repr(e.name) for e in WEIGHTINGS.entries() if e.meta.get('solver')
                and any(u.find_spec(m) is None for m in EXTRAS[e.meta['solver']][0])))")
  mkdir -p /tmp/sweeps
  sed "s/values = { registered = \"weightings\" }/values = { registered = \"weightings\", exclude = [$missing] }/" \
    benchmarks/ablations/weightings.toml > /tmp/sweeps/weightings.toml
  echo -e "\nmethods left out for want of their solver here: ${missing:-none}" | log
  stage 180 "Every weighting method on the GPU: 1 epoch, 96 frames, seed 0, 4 workers sharing the GPU" \
    python3 -m mtlbench ablate /tmp/sweeps/weightings.toml --seeds 0 --set train.epochs=1 \
    --set data.options.frames=96 --jobs 4 --out /tmp/sweeps/weightings
  cp /tmp/sweeps/weightings/table.md "$OUT/weightings_table.md" 2>/dev/null
fi
if want sweep; then
  stage 240 "seed_guidance in the quick setting on the GPU, 3 seeds, 4 workers sharing the GPU" \
    python3 -m mtlbench ablate benchmarks/ablations/seed_guidance.toml --jobs 4 --out /tmp/sweeps/seed_guidance
  stage 45 "the same sweep again: everything finished is found, nothing retrains" \
    python3 -m mtlbench ablate benchmarks/ablations/seed_guidance.toml --out /tmp/sweeps/seed_guidance
  cp /tmp/sweeps/seed_guidance/table.md "$OUT/seed_guidance_table.md" 2>/dev/null
  cp /tmp/sweeps/seed_guidance/figure.png "$OUT/seed_guidance_figure.png" 2>/dev/null
fi
