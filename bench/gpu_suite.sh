#!/usr/bin/env bash
# Every GPU measurement of the project in one prepared run (<= 10 minutes on one CUDA GPU):
#   1. bench/inference.py, both families: end to end vs naive, model only, peak memory
#      (the U-Net's mosaics above 1024² are GlaS train images, else DSB: carry one of them)
#   2. bench/inference.py --compare-baseline: the pipeline before issue 21 vs today's,
#      interleaved, on real DSB images with the demo models (speed-up, label agreement)
#   3. bench/train_throughput.py: one minute of U-Net training, crops per second
#   4. bench/accuracy.py: one short DSB run (U-Net, 2 minutes), scored on 30 held-out images
#   5. bench/plane_overlap.py: a stack's post-processing in threads while the network runs
#      (16 planes of 1024², plane by plane against 1, 2 and 4 threads)
#   6. bench/plane_overlap.py --planes-together both: a time-lapse of 64 small planes (256²),
#      one plane per forward pass against 8 (the batch size) per pass
#   7. bench/batch.py --modes batch-none-alone batch-none: a folder of small DSB images of
#      one shape, one image per forward pass against groups of 8 (the batch size)
#   8. bench/rank_speed.py: what to correct next on 16 DSB images, each image's augmented
#      copies one by one against together (the batch size per pass)
#   9. bench/compile_speed.py: torch.compile (PredictParams.compile) against the same
#      backend without it, on the sample image and real DSB images, labels compared
#  10. bench/plane_overlap.py --two-deep both: a stack's planes with pinned copies and maps
#      fetched in the post-processing threads (two planes in flight) against without
#  11. bench/tile_sweep.py: tile 512/768/1024 x batch 4/8 against the default (512, 4) on
#      real DSB mosaics up to 4096²: the candidate CUDA default, labels compared
#  12. pytest -m gpu tests/gpu: the CUDA-only tests (GPU mode only; needs pytest there), a
#      JUnit report in gpu_tests_cuda.xml
# Each step has its own time limit; a step that fails or runs out is recorded and the next
# one runs. JSON goes to bench/results/ (names end in _cuda), and a summary to
# bench/results/gpu_suite_<mode>.json.
#
#   bench/gpu_suite.sh                 # on the CUDA machine, from the repository root
#   bench/gpu_suite.sh --smoke         # tiny sizes on the CPU, under a minute (make test runs it)
#   bench/gpu_suite.sh --smoke --out DIR
#   bench/gpu_suite.sh --skip accuracy  # leave a step out (repeatable) to give its minutes elsewhere
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
TAG=""  # no --tag: its files are named by mode
# shellcheck source=bench/_suite.sh
source "$ROOT/bench/_suite.sh"
suite_setup "$@"
UNET="$ROOT/sample_data/models/unet_dsb.safetensors"
MRCNN="$ROOT/sample_data/models/maskrcnn_dsb.safetensors"

if [ "$MODE" = smoke ]; then
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    mkdir -p "$TMP/data/dsb2018/stage1_train" "$TMP/empty"
    cp -r "$ROOT/sample_data/images" "$ROOT/sample_data/masks" "$TMP/data/dsb2018/stage1_train/"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    step inference 300 "$PY" "$ROOT/bench/inference.py" --device cpu --families unet maskrcnn \
        --sizes 64 --tile 64 --batch-size 1 --repeats 1 --encoder resnet18 \
        --maskrcnn-min-size 64 --maskrcnn-detections 10 --data-root "$TMP/empty" --out "$OUT"
    step compare_baseline 300 "$PY" "$ROOT/bench/inference.py" --compare-baseline --device cpu \
        --shapes 64x64 --no-maskrcnn-sample --repeats 1 --untiled-up-to 0 \
        --data-root "$TMP/empty" --out "$OUT"
    step train_throughput 300 "$PY" "$ROOT/bench/train_throughput.py" --device cpu \
        --seconds 1 --encoder resnet18 --batch-size 2 --patch-size 32 --samples-per-epoch 2 \
        --workers 0 --data "$TMP/data/dsb2018/stage1_train" --out "$OUT"
    step accuracy 300 "$PY" "$ROOT/bench/accuracy.py" --device cpu --datasets dsb \
        --families unet --minutes 0.01 --batch-size 2 --patch-size 32 --samples-per-epoch 2 \
        --encoder resnet18 --workers 0 --max-eval 1 --data-root "$TMP/data" --out "$OUT"
    step plane_overlap 300 "$PY" "$ROOT/bench/plane_overlap.py" --device cpu --size 64 \
        --planes 3 --threads 0 2 --repeats 1 --data-root "$TMP/data" --out "$OUT"
    step plane_batches 300 "$PY" "$ROOT/bench/plane_overlap.py" --device cpu --size 64 \
        --planes 3 --threads 0 --planes-together both --repeats 1 --data-root "$TMP/data" \
        --out "$OUT" --out-name plane_batches_cpu.json
    step batch_groups 300 "$PY" "$ROOT/bench/batch.py" --device cpu --diameter off \
        --same-shape --files 4 --distinct 2 --modes batch-none-alone batch-none \
        --batch-size 2 --skip-memory --data-root "$TMP/data" --out "$OUT" --suffix _groups
    step rank_copies 300 "$PY" "$ROOT/bench/rank_speed.py" --device cpu --images 2 \
        --repeats 1 --diameter off --data-root "$TMP/data" --out "$OUT"
    step compile 300 "$PY" "$ROOT/bench/compile_speed.py" --device cpu --backends torch \
        --shapes --repeats 1 --compile-backend eager --data-root "$TMP/data" --out "$OUT"
    step two_deep 300 "$PY" "$ROOT/bench/plane_overlap.py" --device cpu --size 64 \
        --planes 3 --threads 2 --two-deep both --repeats 1 --data-root "$TMP/data" \
        --out "$OUT" --out-name two_deep_cpu.json
    step tile_sweep 300 "$PY" "$ROOT/bench/tile_sweep.py" --device cpu --sizes 128 \
        --tiles 64 --batch-sizes 1 2 --repeats 1 --data-root "$TMP/data" --out "$OUT"
else
    step inference 190 "$PY" "$ROOT/bench/inference.py" --device cuda --families unet maskrcnn \
        --sizes 1024 2048 4096 --skip-naive-above 2048 --weights-unet "$UNET" \
        --weights-maskrcnn "$MRCNN" --data-root "$DATA" --out "$OUT"
    step compare_baseline 100 "$PY" "$ROOT/bench/inference.py" --compare-baseline \
        --device cuda --repeats 3 --data-root "$DATA" --out "$OUT"
    step train_throughput 110 "$PY" "$ROOT/bench/train_throughput.py" --device cuda \
        --seconds 60 --data "$DATA/dsb2018/stage1_train" --out "$OUT"
    step accuracy 160 "$PY" "$ROOT/bench/accuracy.py" --device cuda --datasets dsb \
        --families unet --minutes 2 --max-eval 30 --data-root "$DATA" --out "$OUT" \
        --out-name accuracy_cuda_short.json
    step plane_overlap 100 "$PY" "$ROOT/bench/plane_overlap.py" --device cuda --size 1024 \
        --planes 16 --threads 0 1 2 4 --repeats 3 --data-root "$DATA" --out "$OUT"
    step plane_batches 90 "$PY" "$ROOT/bench/plane_overlap.py" --device cuda --size 256 \
        --planes 64 --threads 2 --planes-together both --batch-size 8 --repeats 3 \
        --data-root "$DATA" --out "$OUT" --out-name plane_batches_cuda.json
    step batch_groups 90 "$PY" "$ROOT/bench/batch.py" --device cuda --diameter off \
        --same-shape --files 128 --distinct 16 --modes batch-none-alone batch-none \
        --batch-size 8 --skip-memory --data-root "$DATA" --out "$OUT" --suffix _groups
    step rank_copies 90 "$PY" "$ROOT/bench/rank_speed.py" --device cuda --images 16 \
        --repeats 2 --data-root "$DATA" --out "$OUT"
    step compile 150 "$PY" "$ROOT/bench/compile_speed.py" --device cuda --repeats 3 \
        --data-root "$DATA" --out "$OUT" --out-name compile_speed_cuda.json
    step two_deep 80 "$PY" "$ROOT/bench/plane_overlap.py" --device cuda --size 1024 \
        --planes 16 --threads 4 --two-deep both --repeats 3 --data-root "$DATA" --out "$OUT" \
        --out-name two_deep_cuda.json
    step tile_sweep 120 "$PY" "$ROOT/bench/tile_sweep.py" --device cuda \
        --sizes 1024 2048 4096 --repeats 2 --data-root "$DATA" --out "$OUT"
    step gpu_tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu "$ROOT/tests/gpu" \
        --rootdir "$ROOT" --junitxml "$OUT/gpu_tests_cuda.xml"
fi

finish_suite "$OUT/gpu_suite_${MODE}.json" "$MODE"
