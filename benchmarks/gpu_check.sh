#!/usr/bin/env bash
# layerprof's checks for a machine with an NVIDIA GPU: the CUDA tests (pytest -m cuda) and the GPU
# timing benchmark. Every result is written under one folder, $1 (default ./gpu-results):
#
#   environment.txt                 nvidia-smi, torch and CUDA versions, the commit
#   pytest-cuda.txt / .xml          pytest -m cuda (output and JUnit XML)
#   bench_timing_cuda.txt / .json   benchmarks/bench_timing.py --device cuda
#   honesty_cuda.txt / .json        benchmarks/bench_roofline_honesty.py --device cuda (resnet50 b1/b32,
#                                   fp32/fp16, measured ceilings and the h100-sxm table entry)
#   summary.txt                     exit status of each step
#
# From a fresh checkout, after `pip install -e .[test]`:   bash benchmarks/gpu_check.sh [OUT_DIR]
# Set PYTHON to pick the interpreter (default: python). Exit 0 when every step passed, 2 when torch
# sees no CUDA device, 1 otherwise.
set -u -o pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-./gpu-results}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON:-python}"
cd "$repo"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi 2>&1 || echo "nvidia-smi not found"
    "$python" - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(), torch.cuda.get_device_capability())
EOF
} >"$out/environment.txt" 2>&1

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device: nothing checked (see $out/environment.txt)" | tee "$out/summary.txt"
    exit 2
fi

"$python" -m pytest -m cuda tests -rA -p no:cacheprovider --junitxml="$out/pytest-cuda.xml" 2>&1 |
    tee "$out/pytest-cuda.txt"
tests_status=${PIPESTATUS[0]}

"$python" benchmarks/bench_timing.py --device cuda --out "$out/bench_timing_cuda.json" 2>&1 |
    tee "$out/bench_timing_cuda.txt"
bench_status=${PIPESTATUS[0]}

"$python" benchmarks/bench_roofline_honesty.py --device cuda --table-target "${TABLE_TARGET:-h100-sxm}" \
    --out "$out/honesty_cuda.json" 2>&1 | tee "$out/honesty_cuda.txt"
honesty_status=${PIPESTATUS[0]}

{
    echo "pytest -m cuda: exit $tests_status"
    echo "benchmarks/bench_timing.py --device cuda: exit $bench_status"
    echo "benchmarks/bench_roofline_honesty.py --device cuda: exit $honesty_status"
    echo "results in $out"
} | tee "$out/summary.txt"

if [ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ] && [ "$honesty_status" -eq 0 ]; then
    exit 0
fi
exit 1
