#!/usr/bin/env bash
# The GPU check, in one run of at most 8 minutes on a lent CUDA machine: the CUDA tests, then the GPU rows of the
# benchmarks (images; video in fp32, bf16 and compiled; 1, 3 and 8 objects), printed as one table and written to
# runs/gpu/benchmarks.md. Run from the repository root: bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/gpu
if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu && .venv-gpu/bin/python -m pip install -q -e ".[dev]" || exit 1
fi
PY=.venv-gpu/bin/python
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
$PY -m samkit.cli checks | tee runs/gpu/checks.txt
timeout 150 $PY -m pytest -q tests/test_cuda.py -p no:cacheprovider 2>&1 | tail -15 | tee runs/gpu/test_cuda.txt
timeout 300 $PY -m benchmarks --device cuda --models t --repeats 5 --everything 32 --half --compile \
    --video-frames 48 --video-objects 1,3,8 --out runs/gpu/benchmarks.md
cat runs/gpu/benchmarks.md
