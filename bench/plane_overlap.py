"""A stack's post-processing in worker threads while the network runs the next plane.

A time-lapse of ``--planes`` real planes (a DSB mosaic of ``--size``², turned and flipped
so that no two planes are equal) is segmented plane by plane (``threads 0``: the network,
then the post-processing, then the next plane) and with ``N`` post-processing threads
(:mod:`napari_cellseg.inference.plane_overlap`), interleaved, best of ``--repeats``; the
labels of every overlapped run are compared with the plane-by-plane ones.
``--planes-together both`` also runs each setting with planes of one tile each going through
the network one per pass (:data:`~napari_cellseg.inference.plane_network.PLANES_TOGETHER`
off) beside ``batch_size`` per pass (on CUDA; the CPU passes one tile at a time anyway):
use a ``--size`` of at most the tile size (512) for that. ``--two-deep both`` also runs each
setting without the GPU's two-deep pipeline (:mod:`napari_cellseg.inference.transfer`:
pinned copies that do not block, maps fetched in the post-processing threads) beside with
it (the default). Writes
``bench/results/plane_overlap_<device>.json`` and prints a Markdown table.

    .venv/bin/python bench/plane_overlap.py --planes 8 --size 1024 --threads 0 1 2
    python3 bench/plane_overlap.py --device cuda --planes 16 --threads 0 1 2 4   # on a GPU
    python3 bench/plane_overlap.py --device cuda --size 256 --planes 64 --threads 2 \
        --planes-together both --out-name plane_batches_cuda.json
    python3 bench/plane_overlap.py --device cuda --planes 16 --threads 4 --two-deep both \
        --out-name two_deep_cuda.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import PeakRSS, machine, write_json

from napari_cellseg.device import resolve_device
from napari_cellseg.inference import plane_network, plane_overlap, transfer
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


def apply(setting: tuple) -> None:
    """Set the module switches of one ``(threads, planes together, two-deep)`` setting."""
    threads, together, deep = setting
    plane_overlap.POST_THREADS, plane_network.PLANES_TOGETHER = threads, together
    transfer.PINNED = transfer.FETCH_LATER = deep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--planes-together", choices=["on", "off", "both"], default="on")
    parser.add_argument("--two-deep", choices=["on", "off", "both"], default="on")
    parser.add_argument("--batch-size", type=int, default=4)
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
    params = PredictParams(
        device=str(device), axes="TYXC", diameter="off", batch_size=args.batch_size
    )
    predict_planes(stack[:2, :256, :256], loaded, params)  # warm-up
    choice = {"on": [True], "off": [False], "both": [False, True]}
    settings = [
        (n, flag, deep)
        for n in dict.fromkeys(args.threads)
        for flag in choice[args.planes_together]
        for deep in choice[args.two_deep]
    ]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    stages: dict[tuple, dict] = {}
    labels: dict[tuple, np.ndarray] = {}
    peaks: dict[tuple, float] = {}
    for _ in range(args.repeats):
        for setting in settings:  # interleaved: each setting once per round
            apply(setting)
            with PeakRSS(interval=0.02) as rss:
                prediction, seconds = timed(device, predict_planes, stack, loaded, params)
                times[setting].append(seconds)
            peaks[setting] = max(peaks.get(setting, 0.0), rss.mib)
            if times[setting][-1] == min(times[setting]):
                stages[setting] = {k: round(v, 4) for k, v in prediction.timings.items()}
            labels.setdefault(setting, prediction.labels)
    apply((None, True, True))  # the defaults
    reference = labels[settings[0]]
    rows = []
    for setting in settings:
        best = min(times[setting])
        rows.append(
            {
                "threads": setting[0],
                "planes_together": setting[1],
                "two_deep": setting[2],
                "best_seconds": best,
                "all_seconds": times[setting],
                "speedup_vs_first": min(times[settings[0]]) / best,
                "seconds_per_plane": best / args.planes,
                "stages_of_best": stages[setting],
                "peak_rss_above_start_mib": peaks[setting],
                "labels_identical_to_first": bool(np.array_equal(labels[setting], reference)),
                "objects": int(sum(len(np.unique(p)) - 1 for p in labels[setting])),
            }
        )
    result = {
        "hardware": machine(device),
        "image": image_name,
        "size": args.size,
        "planes": args.planes,
        "model": loaded.card.name,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "default_threads": plane_overlap.post_threads(device, args.planes),
        "results": rows,
    }
    write_json(args.out, args.out_name or f"plane_overlap_{device.type}.json", result)
    print(f"{args.planes} planes of {args.size}² ({image_name}), {loaded.card.name}, {device}")
    print(
        "| post threads | planes together | two-deep | best s | s per plane | speed-up "
        "| network s | post-processing s (summed over threads) | labels as the first row |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["stages_of_best"]
        together = "yes" if r["planes_together"] else "no"
        deep = "yes" if r["two_deep"] else "no"
        print(
            f"| {r['threads']} | {together} | {deep} | {r['best_seconds']:.2f} | "
            f"{r['seconds_per_plane']:.3f} | "
            f"{r['speedup_vs_first']:.2f} | {st.get('network', 0):.2f} | "
            f"{st.get('postprocess', 0):.2f} | "
            f"{'yes' if r['labels_identical_to_first'] else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
