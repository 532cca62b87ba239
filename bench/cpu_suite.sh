#!/usr/bin/env bash
# Issue 21's CPU measurements in one run, on one machine, one after the other (run it on a
# fresh clone with nothing else running; about 20 minutes on 2 cores):
#   1. bench/inference.py --compare-baseline: the pipeline before issue 21 against today's
#      (default backend, PyTorch, bf16), interleaved, best of 7, labels compared
#   2. bench/postprocess_speed.py: post-processing alone, old against new, CPU seconds
#   3. bench/inference_memory.py: peak resident memory, each (image, pipeline) in its own process
#      (3 times, interleaved; the median)
#   4. bench/cold_start.py: `cellseg predict` in fresh processes, the model built (as before
#      known exports) against today's start, 7 pairs per case
#   5. bench/speed_vs_cellpose.py: 20 DSB images against Cellpose 3 (given the diameter, and
#      each estimating it); needs .venv-cellpose (made first with `make cellpose-venv` if absent)
# JSON goes to bench/results/ with names ending in _cpu_<tag>.json (tag: --tag, default the
# date and commit), and a summary to cpu_suite_<tag>.json. Each step has a time limit; one
# that fails or runs out is recorded and the next one runs.
#
#   bench/cpu_suite.sh                  # from the repository root
#   bench/cpu_suite.sh --tag s17        # name the results
#   bench/cpu_suite.sh --smoke --out DIR   # tiny sizes, about a minute (make test runs it)
#   bench/cpu_suite.sh --skip cellpose  # leave a step out (repeatable)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=full
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
TAG="$(date -u +%Y%m%d)_$COMMIT"
# shellcheck source=bench/_suite.sh
source "$ROOT/bench/_suite.sh"
suite_setup "$@"

if [ "$MODE" = smoke ]; then
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    mkdir -p "$TMP/empty"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    step compare_baseline 300 "$PY" "$ROOT/bench/inference.py" --compare-baseline --device cpu \
        --shapes 64x64 --no-maskrcnn-sample --repeats 1 --untiled-up-to 0 \
        --data-root "$TMP/empty" --out "$OUT" --out-name "inference_speed_cpu_$TAG.json"
    step postprocess 300 "$PY" "$ROOT/bench/postprocess_speed.py" --repeats 1 --mosaics 64 \
        --data-root "$TMP/empty" --out "$OUT" --out-name "postprocess_speed_cpu_$TAG.json"
    step memory 300 "$PY" "$ROOT/bench/inference_memory.py" --shapes 64x64 --no-brightfield \
        --pipelines old new --data-root "$TMP/empty" --out "$OUT" \
        --name "inference_memory_cpu_$TAG.json"
    step cold_start 300 "$PY" "$ROOT/bench/cold_start.py" --cases one --repeats 1 \
        --extra="--diameter off" --out "$OUT" --name "cold_start_cpu_$TAG.json"
else
    step compare_baseline 1200 "$PY" "$ROOT/bench/inference.py" --compare-baseline \
        --device cpu --repeats 7 --data-root "$DATA" --out "$OUT" \
        --out-name "inference_speed_cpu_$TAG.json"
    step postprocess 600 "$PY" "$ROOT/bench/postprocess_speed.py" --repeats 5 \
        --data-root "$DATA" --out "$OUT" --out-name "postprocess_speed_cpu_$TAG.json"
    step memory 1200 "$PY" "$ROOT/bench/inference_memory.py" --repeats 3 \
        --data-root "$DATA" --out "$OUT" \
        --name "inference_memory_cpu_$TAG.json"
    step cold_start 600 "$PY" "$ROOT/bench/cold_start.py" --repeats 7 --out "$OUT" \
        --name "cold_start_cpu_$TAG.json"
    CELLPOSE_PY="$ROOT/.venv-cellpose/bin/python"
    if [ ! -x "$CELLPOSE_PY" ] && [[ "$SKIP" != *" cellpose "* ]]; then
        step cellpose_venv 900 make -C "$ROOT" cellpose-venv
    fi
    step cellpose 1200 "$PY" "$ROOT/bench/speed_vs_cellpose.py" --images 20 \
        --data "$DATA/dsb2018/stage1_train" --cellpose-python "$CELLPOSE_PY" \
        --out "$OUT/speed_vs_cellpose_cpu_$TAG.json"
fi

finish_suite "$OUT/cpu_suite_$TAG.json" "$MODE" ", \"tag\": \"$TAG\", \"commit\": \"$COMMIT\""
