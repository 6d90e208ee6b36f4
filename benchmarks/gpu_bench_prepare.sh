#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI) before a device run of benchmarks/gpu_bench.sh:
# puts into .gpu_carry/ (git-ignored) what the GPU machine lacks and cannot fetch:
#   whl/    wheels for Python 3.12 x86-64: onnx2torch, pydantic (+ core, annotated-types,
#           typing-inspection, typing-extensions), insightface (its alignment helper);
#           the GPU image already has torch, onnx, onnxruntime (CPU), OpenCV, numpy, scipy,
#           scikit-image, tqdm. onnxruntime-gpu (~250 MB) is over the 64 MiB a run may carry,
#           so the ORT CUDA path is checked only where that image has it.
#   models/ the verified default models (edge models install), ~38 MB
#   data/   the arcade 1080p clip from ../shared/data/videos
# Then call the device tool's run with carry [".gpu_carry"] and the command
#   bash benchmarks/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .gpu_carry && mkdir -p .gpu_carry/whl .gpu_carry/models .gpu_carry/data
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu_carry/whl onnx2torch==1.5.15 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types \
  typing-inspection "typing-extensions>=4.16" insightface==2.1
"$PY" -m edge.cli models install --dir .gpu_carry/models
cp "${EDGE_SHARED_DATA:-../shared/data}/videos/walking_arcade_1080p.mp4" .gpu_carry/data/
du -sh .gpu_carry
