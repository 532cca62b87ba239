"""Tile size and batch size for a device: end to end, each setting against today's default.

Issue 21 asks for CUDA defaults for tile and batch size. On a GPU larger tiles and batches
may fill the device better (on the lent H200 the network ran 512² tiles in batches of 4 at
about 1 % of its peak), but they hold more memory and change where tiles meet. This runs
the demo U-Net on mosaics of real DSB images (``--sizes``) at every ``--tiles`` ×
``--batch-sizes`` setting, settings interleaved in each round, best of ``--repeats`` (the
first call of each setting at each size kept apart), and records for each: seconds, the
network's and post-processing's share, peak device memory (CUDA) and how far its labels
agree with the default setting's (512, 4: ``PredictParams``'s). The fastest setting whose
labels agree (F1 at IoU 0.5 ≥ ``--min-f1`` on every size) is reported as the candidate
default; whether to adopt it is for the person reading the numbers.

Writes ``bench/results/tile_sweep_<device>.json`` (``--out-name``) and prints a table.

    python3 bench/tile_sweep.py --device cuda --sizes 1024 2048 4096    # on a GPU
    .venv/bin/python bench/tile_sweep.py --sizes 1024 2048 --tiles 512 768 1024 --batch-sizes 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json

from inference import DEFAULT_DATA, ROOT, mosaic, mosaic_source, timed
from napari_cellseg.device import resolve_device
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.labels.metrics import matching_at
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams

DEFAULT_SETTING = (PredictParams().tile_size, PredictParams().batch_size)


def run_setting(image, loaded, device, tile: int, batch: int) -> tuple:
    """One end-to-end call: ``(prediction, seconds, peak device MiB or None)``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    params = PredictParams(
        device=str(device), diameter="off", tile_size=tile, batch_size=batch, overlap=None
    )
    prediction, seconds = timed(device, predict_planes, image, loaded, params)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return prediction, seconds, peak


def candidate(rows: list[dict], min_f1: float) -> dict | None:
    """The setting with the least summed best time over the sizes among those whose labels
    agree with the default's (F1 ≥ ``min_f1`` at every size).

    >>> rows = [{"tile": 512, "batch_size": 4, "best_seconds": 2.0, "f1_vs_default": 1.0},
    ...         {"tile": 1024, "batch_size": 8, "best_seconds": 1.0, "f1_vs_default": 0.99},
    ...         {"tile": 256, "batch_size": 8, "best_seconds": 0.5, "f1_vs_default": 0.9}]
    >>> candidate(rows, 0.98)
    {'tile': 1024, 'batch_size': 8, 'summed_best_seconds': 1.0}
    """
    totals: dict[tuple[int, int], float] = {}
    failed: set[tuple[int, int]] = set()
    for row in rows:
        key = (row["tile"], row["batch_size"])
        totals[key] = totals.get(key, 0.0) + row["best_seconds"]
        if row["f1_vs_default"] < min_f1:
            failed.add(key)
    good = {k: v for k, v in totals.items() if k not in failed}
    if not good:
        return None
    (tile, batch), seconds = min(good.items(), key=lambda kv: kv[1])
    return {"tile": tile, "batch_size": batch, "summed_best_seconds": round(seconds, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-f1", type=float, default=0.98)
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    loaded = load_weights(args.weights, device=device)
    source, _ = mosaic_source("dsb", args.data_root)
    settings = list(dict.fromkeys([DEFAULT_SETTING] + [
        (t, b) for t in args.tiles for b in args.batch_sizes
    ]))  # fmt: skip
    run_setting(mosaic(256, "dsb", args.data_root), loaded, device, *DEFAULT_SETTING)  # warm-up
    rows = []
    for size in args.sizes:
        image = mosaic(size, "dsb", args.data_root)
        first: dict = {}
        times: dict = {s: [] for s in settings}
        kept: dict = {}
        for _ in range(args.repeats):
            for setting in settings:  # interleaved: each setting once per round
                prediction, seconds, peak = run_setting(image, loaded, device, *setting)
                first.setdefault(setting, seconds)
                times[setting].append(seconds)
                if seconds == min(times[setting]):
                    kept[setting] = (prediction, peak)
        reference = kept[DEFAULT_SETTING][0].labels
        for setting in settings:
            prediction, peak = kept[setting]
            timings = prediction.timings
            rows.append(
                {
                    "size": size,
                    "tile": setting[0],
                    "batch_size": setting[1],
                    "tile_used": prediction.params.tile_size,
                    "batch_used": prediction.params.batch_size,
                    "best_seconds": round(min(times[setting]), 4),
                    "first_seconds": round(first[setting], 4),
                    "all_seconds": [round(t, 4) for t in times[setting]],
                    "network_seconds": round(timings.get("network", 0.0), 4),
                    "postprocess_seconds": round(timings.get("postprocess", 0.0), 4),
                    "peak_device_mib": None if peak is None else round(peak, 1),
                    "objects": prediction.n_objects,
                    "f1_vs_default": round(
                        float(matching_at(reference, prediction.labels, 0.5)["f1"]), 4
                    ),
                    "identical_to_default": bool(np.array_equal(reference, prediction.labels)),
                }
            )
    result = {
        "hardware": machine(device),
        "model": loaded.card.name,
        "image": source,
        "repeats": args.repeats,
        "default": {"tile": DEFAULT_SETTING[0], "batch_size": DEFAULT_SETTING[1]},
        "candidate": candidate(rows, args.min_f1),
        "results": rows,
    }
    write_json(args.out, args.out_name or f"tile_sweep_{device.type}.json", result)
    print(f"{loaded.card.name} on {device}, {source}, best of {args.repeats}")
    print(
        "| size | tile | batch | best s (first) | vs default | network s | post s | peak MiB "
        "| F1 vs default |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    best_default = {r["size"]: r["best_seconds"] for r in rows
                    if (r["tile"], r["batch_size"]) == DEFAULT_SETTING}  # fmt: skip
    for r in rows:
        peak = "–" if r["peak_device_mib"] is None else f"{r['peak_device_mib']:.0f}"
        print(
            f"| {r['size']}² | {r['tile']} | {r['batch_size']} | {r['best_seconds']:.3f} "
            f"({r['first_seconds']:.3f}) | {best_default[r['size']] / r['best_seconds']:.2f}× | "
            f"{r['network_seconds']:.3f} | {r['postprocess_seconds']:.3f} | {peak} | "
            f"{r['f1_vs_default']:.3f} |"
        )
    print(f"candidate default: {result['candidate']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
