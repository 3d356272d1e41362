#!/usr/bin/env bash
# The one prepared GPU check (run through the device tool from the repository root):
# the torch adapter's CUDA tests, then the neural-ODE adjoint benchmark on CUDA.
# Needs the array-api-compat wheel in .whl/ (see docs/torch.md, "CUDA check").
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" \
    | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider --runxfail tests/test_torch_cuda.py \
    tests/test_torch_odeint.py -k "cuda or CUDA" 2>&1 | tee "$OUT/cuda_tests.txt" | tail -15
timeout 330 python3 validation/bench_torch.py --device cuda --in-process --widths 1024 2048 \
    --batches 4 64 --repeats 3 --out "$OUT/bench_torch_cuda.md" --json "$OUT/bench_torch_cuda.json"
