#!/usr/bin/env bash
# One accelerator run for issue 20: `rstar-jax bench device` (every section), the kernel tests on
# the real backend, and the mesh/dtype tests under the machine's own jax (0.11.x there), from the
# source tree (PYTHONPATH=., no install step). About 9.5 minutes at most; results under $OUT.
#
# Prepare here, once (pure-Python wheels the lent H200 lacks: the search section grades answers
# with math-verify and its policy training logs through tensorboardX):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl math-verify==0.9.0 \
#       latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 tensorboardX==2.6.5
# Then on the device tool: run(command="bash experiments/device_run.sh", carry=[".whl"], timeout_s=600)
# (BENCH_ARGS="--tiny" runs the same script at CPU smoke size.)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 RSTAR_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false
export RSTAR_JAX_COMPILE_CACHE=off  # compile seconds are part of what is measured

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    $PY -c "import sys, jax, flax, optax, torch, transformers; print(sys.version.split()[0], 'jax', jax.__version__,
    'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'transformers',
    transformers.__version__, jax.devices())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. the benchmark: sections are skipped (and listed as such) past 340 s; the JSON is rewritten
#    after each section, so a run stopped by the timeout keeps what it measured
timeout 390 $PY -m rstar_jax.cli bench device --budget-s 340 ${BENCH_ARGS:-} --out "$OUT/bench_device.json" \
    >"$OUT/bench_device.log" 2>&1
echo "bench device: exit $?"

# 2. the tree-attention kernels compiled for the real backend (the pytest kernel tests run them in
#    interpret mode): every comparison against float64 attention, then timings at 7B-shaped heads
timeout 130 $PY -m rstar_jax.kernels.check --json "$OUT/kernel_check.json" >"$OUT/kernel_tests.log" 2>&1
echo "kernel check: exit $?"

# 3. jax on this machine (newer than CI's): sharded bf16 inference and placement, on its CPU
JAX_PLATFORMS=cpu timeout 50 $PY -m pytest -q -x tests/test_sharded_inference.py tests/test_models.py \
    >"$OUT/compat_tests.log" 2>&1
echo "compat tests (JAX_PLATFORMS=cpu): exit $?"

tail -n 3 "$OUT/kernel_tests.log" "$OUT/compat_tests.log"
tail -n 20 "$OUT/bench_device.log"
