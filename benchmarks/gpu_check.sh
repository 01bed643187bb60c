#!/usr/bin/env bash
# One short GPU check (< 5 minutes on a bare CUDA machine): set up, run the model and the time-series
# benchmarks on the GPU, write JSON.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; results in $OUT or ./gpu-results
#
# Set-up: uses an installed torch that sees a GPU if there is one (python3 -c "import torch"), else creates
# a venv (.gpu-venv) and installs torch from PyPI (its default Linux wheel bundles CUDA) and the package.
# Writes: env.json (GPU, driver, torch), bench_model.json (ResNet-18/50 x seed/light decoders, fp32 and
# AMP bf16, channels-last, large batches; sgemm GFLOP/s of the GPU), bench_timeseries.json (the stage on
# the GPU, one pass per scene, scaling 50/200/800 scenes), and a log of each step.
# Every step has its own time limit, so one slow step leaves the others' results.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="${OUT:-$ROOT/gpu-results}"
mkdir -p "$RESULTS"
cd "$ROOT" || exit 1
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$RESULTS/gpu_check.log"; }

PY=python3
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    log "no CUDA torch installed: creating .gpu-venv and installing torch from PyPI"
    $PY -m venv .gpu-venv || { log "venv failed"; exit 1; }
    PY="$ROOT/.gpu-venv/bin/python"
    timeout 240 "$PY" -m pip install -q --upgrade pip >>"$RESULTS/gpu_check.log" 2>&1
    timeout 240 "$PY" -m pip install -q torch >>"$RESULTS/gpu_check.log" 2>&1 || { log "pip install torch failed"; exit 1; }
fi
# the package and its dependencies (an installed torch is kept)
timeout 180 "$PY" -m pip install -q -e . >>"$RESULTS/gpu_check.log" 2>&1 || log "pip install -e . failed (running from the tree)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - >"$RESULTS/env.json" 2>>"$RESULTS/gpu_check.log" <<'EOF'
import json, os, platform, torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
     "python": platform.python_version(), "cpu_count": os.cpu_count()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    d.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
             capability=f"{p.major}.{p.minor}")
print(json.dumps(d, indent=2))
EOF
cat "$RESULTS/env.json" | tee -a "$RESULTS/gpu_check.log"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "torch sees no GPU: stopping"; exit 1
fi

log "bench_model (GPU): resnet18/resnet50 x seed/light, fp32 + bf16 channels-last"
timeout 150 "$PY" benchmarks/bench_model.py --device cuda --encoders resnet18,resnet50 --decoders seed,light \
    --settings fp32_channels_last,bf16_channels_last --batch-infer 256 --batch-train 64 --repeats 5 --warmup 2 \
    --matmul-n 8192 --json "$RESULTS/bench_model.json" 2>&1 | tee -a "$RESULTS/gpu_check.log"

log "bench_timeseries (GPU): resnet18 light, one pass per scene, scaling 50/200/800"
GPU_IMG_S=$("$PY" -c "import json; print(json.load(open('$RESULTS/bench_model.json')).get('resnet18_light_infer_img_s', 2000))" 2>/dev/null || echo 2000)
timeout 150 "$PY" benchmarks/bench_timeseries.py --device cuda --encoder resnet18 --decoder light --batch-size 256 --read-threads 8 \
    --glaciers 2 --repeat 2 --skip-dask --scaling 50,200,800 --gpu-img-s "$GPU_IMG_S" --cores "$(nproc)" \
    --json "$RESULTS/bench_timeseries.json" 2>&1 | tee -a "$RESULTS/gpu_check.log"
log "done: $(ls "$RESULTS" | tr '\n' ' ')"
