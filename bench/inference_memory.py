"""Peak memory of inference: the pipeline before issue 21 against today's, image by image.

Issue 21 asks for a faster pipeline whose peak memory is no higher than before. A process's
peak resident memory only grows, so every (image, pipeline) pair runs in a fresh child
process: it loads the model, warms it up on a 64² corner (as ``bench/inference.py
--compare-baseline`` does), then segments the image twice while :class:`_common.PeakRSS`
samples its resident memory every 20 ms. Recorded per pair: resident memory after the
warm-up, the peak above it over the two runs (the first holds the one-off allocations of a
new image shape, e.g. ONNX Runtime's buffers), the absolute peak, and the seconds of each run.
The same pair run again in a new process can peak 10-20 MiB apart (measured), so
``--repeats N`` runs every pair N times, the pipelines interleaved, and keeps the run of
median peak (all peaks are kept beside it).

Pipelines: ``old`` (``bench/_baseline.py``, PyTorch, the U-Net loaded with every encoder
stage as before session 22), ``new`` (today's default: ONNX Runtime
for the U-Net on the CPU when the ``onnx`` extra is installed), ``torch`` (today's pipeline
on PyTorch). Today's pipelines load the file as ``cellseg predict`` and the dock do (since
session 23: without building the PyTorch model when its ONNX export is known here,
``inference/onnx_known.py``); one unrecorded run of ``new`` (and ``int8``) first makes and
records the export, as any run after a machine's first finds it. Images: those of
``bench/inference.py --compare-baseline`` (the demo U-Net on
DSB images of 256², 520×696 and 1024² and a 2048² mosaic; the demo Mask R-CNN on the sample
brightfield image), no rescaling (``diameter="off"``), tiles of ``--tile`` px (default 512,
the library's). Example:

    .venv/bin/python bench/inference_memory.py
    .venv/bin/python bench/inference_memory.py --repeats 3     # each row the median of 3
    .venv/bin/python bench/inference_memory.py --shapes 2048x2048 --no-brightfield \
        --pipelines new --tile 1024 --name inference_memory_cpu_tile1024.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

PIPELINES = ("old", "new", "torch", "bf16", "int8")  # bf16, int8: that backend
SHAPES = ("256x256", "520x696", "1024x1024", "2048x2048")
BRIGHTFIELD = "sample dsb_brightfield"


def child(args: argparse.Namespace) -> dict:
    """One (image, pipeline) pair in this process; returns its row."""
    import numpy as np
    import torch
    from _baseline import baseline_loading, baseline_pipeline
    from _common import PeakRSS

    from inference import compare_images
    from napari_cellseg.inference import predict
    from napari_cellseg.inference.onnx_known import load
    from napari_cellseg.io.images import read_image
    from napari_cellseg.io.samples import get_sample
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import PredictParams

    if args.image == BRIGHTFIELD:
        weights = args.weights_maskrcnn or ROOT / "sample_data/models/maskrcnn_dsb.safetensors"
        image = np.asarray(read_image(get_sample("dsb_brightfield").image_path).data)[..., :3]
    else:
        weights = args.weights_unet or ROOT / "sample_data/models/unet_dsb.safetensors"
        ((_, image),) = compare_images(args.data_root, [args.image])
    old = args.pipeline == "old"
    if old:
        with baseline_loading():  # every stage kept
            loaded = load_weights(weights, device="cpu")
    else:  # as cellseg predict and the dock load it: without the model when its export is known
        loaded = load(weights, torch.device("cpu"))
    backend = {"new": "auto", "bf16": "bf16", "int8": "int8"}.get(args.pipeline, "torch")
    params = PredictParams(device="cpu", diameter="off", backend=backend, tile_size=args.tile)
    predict(image[:64, :64], loaded, params)  # warm-up, as the speed benchmark does
    context = baseline_pipeline() if old else contextlib.nullcontext()
    seconds, objects = [], 0
    with context, PeakRSS() as peak:
        for _ in range(2):
            start = time.perf_counter()
            objects = predict(image, loaded, params).n_objects
            seconds.append(round(time.perf_counter() - start, 3))
    return {
        "family": loaded.card.family,
        "image": args.image if args.image == BRIGHTFIELD else f"dsb {args.image}",
        "shape": list(image.shape[:2]),
        "pipeline": args.pipeline,
        "threads": torch.get_num_threads(),
        "rss_after_warmup_mib": round(peak.start / 2**20, 1),
        "peak_above_mib": round(peak.mib, 1),
        "peak_mib": round(peak.peak / 2**20, 1),
        "seconds": seconds,
        "objects": objects,
    }


def run_child(args: argparse.Namespace, image: str, pipeline: str) -> dict:
    """Run one pair in a fresh interpreter; its row."""
    command = [sys.executable, __file__, "--child", "--image", image, "--pipeline", pipeline]
    command += ["--data-root", str(args.data_root), "--tile", str(args.tile)]
    for name in ("weights_unet", "weights_maskrcnn"):
        if getattr(args, name):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"{image} / {pipeline} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run of median peak (the lower middle one of an even count), with every run's peak
    and rise above the warm start beside it.

    >>> row = median_run([{"peak_mib": 3.0, "peak_above_mib": 1.0}, {"peak_mib": 1.0,
    ...                   "peak_above_mib": 0.5}, {"peak_mib": 2.0, "peak_above_mib": 0.7}])
    >>> row["peak_mib"], row["peak_above_mib"], row["repeats"], row["peaks_mib"]
    (2.0, 0.7, 3, [3.0, 1.0, 2.0])
    """
    ordered = sorted(runs, key=lambda run: run["peak_mib"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle["repeats"] = len(runs)
    middle["peaks_mib"] = [run["peak_mib"] for run in runs]
    middle["peaks_above_mib"] = [run["peak_above_mib"] for run in runs]
    return middle


def table(rows: list[dict]) -> str:
    """Markdown: one line per image, the pipelines side by side."""
    pipelines = [p for p in PIPELINES if any(r["pipeline"] == p for r in rows)]
    head = "| family | image | " + " | ".join(f"peak above start, {p} (MiB)" for p in pipelines)
    ratios = [p for p in ("new", "bf16", "int8") if p in pipelines and "old" in pipelines]
    head += " | " + " | ".join(f"peak, {p} (MiB)" for p in pipelines)
    head += "".join(f" | {p} / old" for p in ratios) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(pipelines) + len(ratios))]
    images = list(dict.fromkeys(r["image"] for r in rows))
    for image in images:
        by = {r["pipeline"]: r for r in rows if r["image"] == image}
        first = next(iter(by.values()))
        above = " | ".join(f"{by[p]['peak_above_mib']:.0f}" if p in by else "–" for p in pipelines)
        peak = " | ".join(f"{by[p]['peak_mib']:.0f}" if p in by else "–" for p in pipelines)
        ratio = "".join(
            f" | {by[p]['peak_mib'] / by['old']['peak_mib']:.2f}"
            if p in by and "old" in by
            else " | –"
            for p in ratios
        )
        lines.append(f"| {first['family']} | {image} | {above} | {peak}{ratio} |")
    return "\n".join(lines)


def main() -> int:
    from inference import DEFAULT_DATA

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--no-brightfield", action="store_true", help="skip the Mask R-CNN")
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tile", type=int, default=512, help="tile size (default 512)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh processes per (image, pipeline), the pipelines interleaved; each row is "
        "the run of median peak, all peaks kept (default 1)",
    )
    parser.add_argument("--weights-unet", type=Path, default=None)
    parser.add_argument("--weights-maskrcnn", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="inference_memory_cpu.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    images = list(args.shapes) + ([] if args.no_brightfield else [BRIGHTFIELD])
    for pipeline in ("new", "int8"):  # the export made and recorded first, as on any run
        if pipeline in args.pipelines and args.shapes:  # after a machine's first: not kept
            run_child(args, args.shapes[0], pipeline)
    rows = []
    for image in images:
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):  # the pipelines interleaved, each run a fresh process
            for pipeline in args.pipelines:
                if image == BRIGHTFIELD and pipeline == "int8":
                    continue  # int8 runs U-Nets only
                row = run_child(args, image, pipeline)
                runs.setdefault(pipeline, []).append(row)
                print(
                    f"{row['image']} {pipeline}: peak +{row['peak_above_mib']:.0f} MiB "
                    f"({row['peak_mib']:.0f} MiB), {row['seconds']} s, {row['objects']} objects",
                    flush=True,
                )
        rows += [median_run(found) for found in runs.values()]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "tile": args.tile,
        "note": "each (image, pipeline) in a fresh process; peak resident memory sampled "
        "every 20 ms over two runs after a 64² warm-up; diameter off; with repeats, the "
        "pipelines interleaved and each row the run of median peak",
        "repeats": args.repeats,
    }
    (args.out / args.name).write_text(json.dumps({**meta, "results": rows}, indent=1))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
