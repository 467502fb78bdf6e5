#!/usr/bin/env bash
# The checks that need a GPU, in one run (the `device` machine: python3 there has CUDA torch, pytest,
# tqdm, matplotlib, safetensors). Writes under $OUT (default ./cuda-check): pytest log, bench JSON/markdown,
# a short character-model run on CUDA and a sample from it. Needs pytest-xdist there.
# On the device machine's image, name the system compiler: CXX=/usr/bin/g++ bash benchmarks/cuda_check.sh. Its
# default CXX (/opt/gcc/bin/g++, a wrapper) built C++ extensions (a minimal one made with torch's load_inline too) that
# crash the interpreter whenever a C++ check throws (2026-11-27, torch 2.11.0+cu130).
#   bash benchmarks/cuda_check.sh      (SKIP_TRAIN=1, SKIP_BENCH=1 leave those parts out; BENCH_ARGS=... narrows the bench)
set -uo pipefail
OUT=${OUT:-cuda-check}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
echo "CXX=${CXX:-} ($(${CXX:-c++} --version | head -1))" | tee -a "$OUT/gpu.txt"
# in workers (xdist): a test that crashes the interpreter is reported as failed and the others still run
$PY -m pytest -q -p no:cacheprovider -n 8 --tb=short tests/test_cuda.py tests/test_engine.py tests/test_layers.py >"$OUT/pytest.txt" 2>&1
grep -E "crashed|FAILED|ERROR|passed|failed" "$OUT/pytest.txt" | tail -20
[ -n "${SKIP_TRAIN:-}" ] || $PY -m unrolled train charlm --preset tiny --device cuda --steps 300 --out "$OUT/run" --quiet 2>&1 | tail -8 | tee "$OUT/train.txt"
[ -n "${SKIP_TRAIN:-}" ] || $PY -m unrolled sample "$OUT/run" --length 200 --temperature 0.8 2>&1 | tail -5 | tee -a "$OUT/train.txt"
rm -rf "$OUT/run"
[ -n "${SKIP_BENCH:-}" ] && exit 0
$PY -m unrolled bench --quick --device cuda ${BENCH_ARGS:-} --json "$OUT/bench.json" --markdown "$OUT/bench.md" 2>&1 | tail -3
cat "$OUT/bench.md"
