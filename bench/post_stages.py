"""Where the U-Net's post-processing spends its time, stage by stage, on real network output.

Issue 21 asks for "the U-Net's seed/threshold steps on the GPU". Before moving a stage, this
measures what it costs: the demo U-Net runs once on mosaics of real DSB images (``--sizes``,
1024² and 2048² by default), then its kept probability map goes through the stages of
:func:`napari_cellseg.inference.postprocess.unet_instances` one by one, in process CPU time
(``time.process_time``: robust to a busy machine), best of ``--repeats``:

- ``thresholds_and_seeds``: the element-wise passes (foreground = 1 - P(background) above
  the threshold; seeds = P(interior) above it and P(boundary) below its own), what a GPU
  could do before the map comes down;
- ``fill_holes``: the foreground's holes, by one labelling of the background;
- ``label_seeds``: the seeds' 8-connected components;
- ``fallback_markers``: a marker for each foreground component without one;
- ``flood``: the marker-controlled watershed;
- ``finish``: small objects removed, objects' holes filled, labels made 1..N;
- ``object_table``: areas, centroids, boxes.

The stages' labels are checked equal to ``unet_instances``'s, and their sum is compared with
it timed whole. Writes ``bench/results/post_stages_cpu.json`` and prints a Markdown table.

    .venv/bin/python bench/post_stages.py --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json
from scipy import ndimage as ndi

from inference import DEFAULT_DATA, ROOT, mosaic, mosaic_source
from napari_cellseg.inference import postprocess as pp
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams

STAGES = (
    "thresholds_and_seeds",
    "fill_holes",
    "label_seeds",
    "fallback_markers",
    "flood",
    "finish",
    "object_table",
)


def staged(probs: np.ndarray, outputs: list[str], post) -> tuple[np.ndarray, dict[str, Callable]]:
    """The labels of ``unet_instances`` (three outputs), made stage by stage, and each stage as
    a callable of no arguments that redoes it on the same inputs (for timing)."""
    background, interior, boundary = (probs[outputs.index(n)] for n in STAGES_OUTPUTS)

    def thresholds():
        foreground = (1.0 - background) > post.prob_threshold
        seeds = (interior > post.prob_threshold) & (boundary < post.boundary_threshold)
        return foreground, seeds

    foreground, seeds = thresholds()
    filled = pp.fill_plane_holes(foreground) if post.fill_holes else foreground
    markers, _ = ndi.label(seeds & filled, structure=pp._FULL)
    with_fallback = pp._add_fallback_markers(markers, filled, None)
    flooded = pp.flood(boundary, with_fallback, filled)
    labels = pp._finish(flooded.copy(), post)
    work = {
        "thresholds_and_seeds": thresholds,
        "fill_holes": lambda: pp.fill_plane_holes(foreground),
        "label_seeds": lambda: ndi.label(seeds & filled, structure=pp._FULL),
        "fallback_markers": lambda: pp._add_fallback_markers(markers, filled, None),
        "flood": lambda: pp.flood(boundary, with_fallback, filled),
        "finish": lambda: pp._finish(flooded.copy(), post),
        "object_table": lambda: object_table(labels),
    }
    return labels, work


STAGES_OUTPUTS = ("background", "interior", "boundary")


def best_cpu_seconds(work: Callable[[], object], repeats: int) -> float:
    """The least process CPU time of ``repeats`` calls of ``work``."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default="post_stages_cpu.json")
    args = parser.parse_args()
    loaded = load_weights(args.weights)
    outputs = list(loaded.card.outputs)
    if tuple(sorted(outputs)) != tuple(sorted(STAGES_OUTPUTS)):
        parser.error(f"--weights: a U-Net with outputs {STAGES_OUTPUTS} is needed, not {outputs}")
    params = PredictParams(device="cpu", diameter="off")
    source, _ = mosaic_source("dsb", args.data_root)
    rows = []
    for size in args.sizes:
        image = mosaic(size, "dsb", args.data_root)
        prediction = predict_planes(image, loaded, params)
        probs, post = prediction.raw[0], prediction.params.post
        labels, work = staged(probs, outputs, post)
        whole = pp.unet_instances(probs, outputs, post)
        seconds = {name: best_cpu_seconds(work[name], args.repeats) for name in STAGES}
        whole_seconds = best_cpu_seconds(
            partial(pp.unet_instances, probs, outputs, post), args.repeats
        )
        rows.append(
            {
                "size": size,
                "objects": int(labels.max()),
                "labels_equal_unet_instances": bool(np.array_equal(labels, whole)),
                "stage_cpu_seconds": {k: round(v, 5) for k, v in seconds.items()},
                "unet_instances_cpu_seconds": round(whole_seconds, 5),
                "share": {k: round(v / sum(seconds.values()), 4) for k, v in seconds.items()},
            }
        )
    result = {
        "hardware": machine(torch.device("cpu")),
        "model": loaded.card.name,
        "image": source,
        "repeats": args.repeats,
        "results": rows,
    }
    write_json(args.out, args.out_name, result)
    print("| stage | " + " | ".join(f"{r['size']}² ms (share)" for r in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for name in STAGES:
        cells = [
            f"{r['stage_cpu_seconds'][name] * 1000:.1f} ({r['share'][name]:.1%})" for r in rows
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"{r['unet_instances_cpu_seconds'] * 1000:.1f}" for r in rows]
    print("| unet_instances, whole | " + " | ".join(cells) + " |")
    print("labels equal: " + ", ".join(str(r["labels_equal_unet_instances"]) for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
