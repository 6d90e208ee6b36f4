#!/usr/bin/env bash
# Run ON THE GPU MACHINE (the device tool), from the repository root, with .gpu_carry carried
# (made by benchmarks/gpu_bench_prepare.sh): installs the carried wheels, then runs the
# correctness checks and the benchmark (benchmarks/gpu_bench.py), which prints a short table
# last and writes $OUT/gpu_bench.json. Extra arguments go to gpu_bench.py (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu_carry/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export EDGE_MODELS_DIR="$PWD/.gpu_carry/models"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
OUT_DIR="${OUT:-out/gpu}"
mkdir -p "$OUT_DIR"
python3 benchmarks/gpu_bench.py --device cuda --clip .gpu_carry/data/walking_arcade_1080p.mp4 \
  --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_bench.log"
