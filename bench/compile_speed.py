"""``PredictParams.compile`` (torch.compile) against the same PyTorch backend without it.

For each PyTorch backend (``torch``; ``bf16`` where the CPU has the instructions; on CUDA
the default autocast) the demo U-Net segments a sequence of real images twice over, with
and without ``compile``, interleaved: first once each in order (the compiled side pays its
compilation there, for each new kind of tile shape: what a user waits for), then
``--repeats`` more times, keeping the best. Labels of both sides are compared. Runs in one
process, as a batch or a long ``cellseg predict`` would.

    .venv/bin/python bench/compile_speed.py                   # CPU, torch and bf16
    .venv/bin/python bench/compile_speed.py --device cuda --out-name compile_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from inference import DEFAULT_DATA, ROOT, compare_images
from napari_cellseg.inference import model_runner
from napari_cellseg.inference.api import predict
from napari_cellseg.inference.onnx_backend import cpu_bf16_supported
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams


def images(data_root: Path, shapes: list[str]) -> list[tuple[str, np.ndarray]]:
    """The sample fluorescence image (256²) and real DSB images of ``shapes``."""
    sample = np.asarray(read_image(get_sample("dsb_fluorescence").image_path).data)
    sample = sample[..., :3] if sample.ndim == 3 else sample
    return [("sample dsb_fluorescence 256x256", sample), *compare_images(data_root, shapes)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=None, help="default: torch (+ bf16)")
    parser.add_argument("--shapes", nargs="*", default=["520x696", "1024x1024"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default="compile_speed_cpu.json")
    args = parser.parse_args()
    model_runner.COMPILE_BACKEND = args.compile_backend
    backends = args.backends or (
        ["torch", "bf16"] if args.device == "cpu" and cpu_bf16_supported() else ["torch"]
    )
    loaded = load_weights(args.weights, device=args.device)
    runs = images(args.data_root, args.shapes)
    rows = []
    for backend in backends:
        params = PredictParams(device=args.device, diameter="off", backend=backend)
        sides = {"eager": params, "compiled": replace(params, compile=True)}
        first: dict[str, list[float]] = {side: [] for side in sides}
        best: dict[str, list[float]] = {side: [] for side in sides}
        labels: dict[str, list[np.ndarray]] = {side: [] for side in sides}
        engines = {}
        for name, image in runs:  # first passes, in order: compilation included
            for side, side_params in sides.items():
                start = time.perf_counter()
                result = predict(image, loaded, side_params)
                first[side].append(round(time.perf_counter() - start, 3))
                labels[side].append(result.labels)
                engines[side] = result.backend
                print(f"{backend} {side} {name}: first {first[side][-1]:.2f} s", flush=True)
        for _name, image in runs:
            times: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(args.repeats):
                for side, side_params in sides.items():
                    start = time.perf_counter()
                    predict(image, loaded, side_params)
                    times[side].append(time.perf_counter() - start)
            for side in sides:
                best[side].append(round(min(times[side]), 3))
        for k, (name, _image) in enumerate(runs):
            a, b = labels["eager"][k], labels["compiled"][k]
            rows.append(
                {
                    "backend": backend,
                    "engine": engines,
                    "image": name,
                    "first_s": {side: first[side][k] for side in sides},
                    "best_s": {side: best[side][k] for side in sides},
                    "speedup_best": round(best["eager"][k] / best["compiled"][k], 3),
                    "objects": [int(a.max()), int(b.max())],
                    "identical": bool(np.array_equal(a, b)),
                    "pixels_equal": float(np.mean(a == b)),
                }
            )
    result = {
        "hardware": {
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if args.device == "cuda" else None,
        },
        "torch": torch.__version__,
        "compile_backend": args.compile_backend,
        "repeats": args.repeats,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.out_name).write_text(json.dumps(result, indent=1))
    print(
        "| backend | image | first s eager / compiled | best s eager / compiled | speed-up "
        "| objects | identical (pixels equal) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['image']} | {r['first_s']['eager']:.2f} / "
            f"{r['first_s']['compiled']:.2f} | {r['best_s']['eager']:.2f} / "
            f"{r['best_s']['compiled']:.2f} | {r['speedup_best']:.2f}× | "
            f"{r['objects'][0]} / {r['objects'][1]} | {'yes' if r['identical'] else 'no'} "
            f"({r['pixels_equal']:.4%}) |"
        )
    print(f"wrote {args.out / args.out_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
