"""What to correct next, timed: ``rank_images`` with its copies grouped and one by one.

``cellseg rank`` segments each image as several augmented copies (default 4). Since session
18 the copies after the first (the same diameter, one shape) go through the network
together where the device passes several small tiles at once (CUDA; ONNX Runtime on the CPU
for tiles up to one 512² tile's pixels: :mod:`napari_cellseg.inference.image_groups`). This
script ranks the same DSB 2018 training images with grouping on and off, interleaved
(best and median of ``--repeats``), and checks that the two rankings are identical (order,
scores, reasons, objects). JSON to ``bench/results/rank_speed_<device>.json``:

    .venv/bin/python bench/rank_speed.py --images 20 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DSB_IMAGES = "dsb2018/stage1_train/images"
DEFAULT_WEIGHTS = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"


def hardware(device: Any) -> dict[str, Any]:
    """The machine the run measured."""
    import torch

    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _signature(ranked: list[Any]) -> list[tuple]:
    """What must be equal in two rankings: order, scores, reasons and every object."""
    return [
        (
            Path(r.path).name,
            r.score,
            r.reason,
            r.uncertain_fraction,
            [(o.label, o.score, o.reason) for o in r.objects],
        )
        for r in ranked
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="first N training images")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--diameter", default=None, help="default: the model card's (auto)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default=None)
    args = parser.parse_args(argv)

    import torch

    from napari_cellseg.batch.ranking import rank_images
    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference import image_groups
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.params import PredictParams

    files = sorted((args.data_root / DSB_IMAGES).glob("*.png"))[: args.images]
    if not files:
        raise SystemExit(f"no DSB images under {args.data_root / DSB_IMAGES}; pass --data-root")
    device = resolve_device(args.device)
    params = PredictParams(device=str(device), diameter=args.diameter)
    model, _ = cached_load(args.weights, device)
    rank_images(files[:1], model, params, copies=args.copies)  # warm-up (export, caches)
    seconds: dict[str, list[float]] = {"together": [], "one_by_one": []}
    rankings: dict[str, list[tuple]] = {}
    for repeat in range(args.repeats):
        order = ("together", "one_by_one") if repeat % 2 == 0 else ("one_by_one", "together")
        for mode in order:
            image_groups.IMAGES_TOGETHER = mode == "together"
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            ranked = rank_images(files, model, params, copies=args.copies)
            seconds[mode].append(time.perf_counter() - t0)
            rankings[mode] = _signature(ranked)
            print(f"  repeat {repeat + 1}, {mode}: {seconds[mode][-1]:.2f} s", flush=True)
    image_groups.IMAGES_TOGETHER = True
    best = {mode: min(v) for mode, v in seconds.items()}
    report = {
        "hardware": hardware(device),
        "command": " ".join(["bench/rank_speed.py", *(argv or sys.argv[1:])]),
        "images": [f.name for f in files],
        "copies": args.copies,
        "params": params.to_dict(),
        "seconds": seconds,
        "best_seconds": best,
        "median_seconds": {mode: statistics.median(v) for mode, v in seconds.items()},
        "speedup_best": best["one_by_one"] / best["together"],
        "identical_ranking": rankings["together"] == rankings["one_by_one"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (args.out_name or f"rank_speed_{device.type}.json")
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    print(
        f"{len(files)} images, {args.copies} copies: one by one {best['one_by_one']:.2f} s, "
        f"together {best['together']:.2f} s (best of {args.repeats}): "
        f"{report['speedup_best']:.2f}x, identical ranking: {report['identical_ranking']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
