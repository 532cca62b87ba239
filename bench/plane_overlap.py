"""A stack's post-processing in worker threads while the network runs the next plane.

A time-lapse of ``--planes`` real planes (a DSB mosaic of ``--size``², turned and flipped
so that no two planes are equal) is segmented plane by plane (``threads 0``: the network,
then the post-processing, then the next plane) and with ``N`` post-processing threads
(:mod:`napari_cellseg.inference.plane_overlap`), interleaved, best of ``--repeats``; the
labels of every overlapped run are compared with the plane-by-plane ones. Writes
``bench/results/plane_overlap_<device>.json`` and prints a Markdown table.

    .venv/bin/python bench/plane_overlap.py --planes 8 --size 1024 --threads 0 1 2
    python3 bench/plane_overlap.py --device cuda --planes 16 --threads 0 1 2 4   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from _common import PeakRSS

from napari_cellseg.device import resolve_device
from napari_cellseg.inference import plane_overlap
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from inference import mosaic, mosaic_source, timed  # noqa: E402  (bench/inference.py)


def stack_of(size: int, planes: int, data_root: Path) -> tuple[str, np.ndarray]:
    """``planes`` different real planes, ``(T, Y, X, 3)`` uint8: one mosaic turned and flipped."""
    name, _ = mosaic_source("dsb", data_root)
    base = mosaic(size, "dsb", data_root)
    variants = [np.rot90(base, k) for k in range(4)] + [np.rot90(base[::-1], k) for k in range(4)]
    return name, np.stack([variants[i % 8] for i in range(planes)]).copy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
    )
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    image_name, stack = stack_of(args.size, args.planes, args.data_root)
    loaded = load_weights(args.weights, device=device)
    params = PredictParams(device=str(device), axes="TYXC", diameter="off")
    predict_planes(stack[:2, :256, :256], loaded, params)  # warm-up
    threads = list(dict.fromkeys(args.threads))
    times: dict[int, list[float]] = {n: [] for n in threads}
    stages: dict[int, dict] = {}
    labels: dict[int, np.ndarray] = {}
    peaks: dict[int, float] = {}
    for _ in range(args.repeats):
        for n in threads:  # interleaved: each setting once per round
            plane_overlap.POST_THREADS = n
            with PeakRSS(interval=0.02) as rss:
                prediction, seconds = timed(device, predict_planes, stack, loaded, params)
                times[n].append(seconds)
            peaks[n] = max(peaks.get(n, 0.0), rss.mib)
            if times[n][-1] == min(times[n]):
                stages[n] = {k: round(v, 4) for k, v in prediction.timings.items()}
            labels.setdefault(n, prediction.labels)
    plane_overlap.POST_THREADS = None
    reference = labels[threads[0]]
    rows = []
    for n in threads:
        best = min(times[n])
        rows.append(
            {
                "threads": n,
                "best_seconds": best,
                "all_seconds": times[n],
                "speedup_vs_first": min(times[threads[0]]) / best,
                "seconds_per_plane": best / args.planes,
                "stages_of_best": stages[n],
                "peak_rss_above_start_mib": peaks[n],
                "labels_identical_to_first": bool(np.array_equal(labels[n], reference)),
                "objects": int(sum(len(np.unique(p)) - 1 for p in labels[n])),
            }
        )
    hardware = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    result = {
        "hardware": hardware,
        "image": image_name,
        "size": args.size,
        "planes": args.planes,
        "model": loaded.card.name,
        "repeats": args.repeats,
        "default_threads": plane_overlap.post_threads(device, args.planes),
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (args.out_name or f"plane_overlap_{device.type}.json")
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    print(f"{args.planes} planes of {args.size}² ({image_name}), {loaded.card.name}, {device}")
    print(
        "| post threads | best s | s per plane | speed-up | network s | post-processing s "
        "(summed over threads) | labels as plane by plane |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["stages_of_best"]
        print(
            f"| {r['threads']} | {r['best_seconds']:.2f} | {r['seconds_per_plane']:.3f} | "
            f"{r['speedup_vs_first']:.2f} | {st.get('network', 0):.2f} | "
            f"{st.get('postprocess', 0):.2f} | "
            f"{'yes' if r['labels_identical_to_first'] else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
