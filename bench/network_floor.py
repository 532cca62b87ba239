"""The float32 floor: how much faster than the old pipeline could *any* float32 pipeline be?

Issue 21 asks the U-Net's end to end time on this 2-core CPU to be a third of the pipeline's
before the issue (``bench/_baseline.py``) at 1024² and 2048². Today's default (float32, ONNX
Runtime) stands near 2.4× and 1.9×, and nearly all of its time is the network's forward
passes (``stages_new`` in ``inference_speed_cpu_*.json``). This script measures the bound
that leaves, per image, in one interleaved run (``--repeats`` rounds of the three):

- ``old``: the pipeline before issue 21, end to end (as ``inference.py --compare-baseline``);
- ``new``: today's default, end to end (ONNX Runtime float32 for the U-Net on the CPU);
- ``floor``: only the default engine's forward passes over the image's own pixels, cut
  into tiles that share no pixel (the image padded to the encoder's multiple, at most
  ``--tile`` a side): no overlap, no normalisation, blending, post-processing or copying
  back. A pipeline that runs this network on every pixel once, in float32, on this CPU,
  cannot take less.

``old / floor`` is then the largest speed-up any float32 pipeline could show against the old
one with this network; where it is below 3, the float32 target cannot be met by changing
the pipeline, only by computing less (fewer pixels, a smaller network) or in lower precision
(``--backend bf16`` / ``int8``, measured in ``inference.py``). Writes
``bench/results/network_floor_cpu.json`` (``--out-name``) and prints a table::

    .venv/bin/python bench/network_floor.py --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _baseline import baseline_pipeline
from _common import machine, write_json

from inference import DEFAULT_DATA, ROOT, compare_images
from napari_cellseg.device import resolve_device
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.planes import predict_planes as predict
from napari_cellseg.inference.unet_strategy import tile_multiple
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams


def floor_tiles(shape: tuple[int, int], tile: int, multiple: int) -> list[tuple[int, ...]]:
    """``(y0, x0, height, width)`` of the tiles that cut an image of ``shape``, padded to
    ``multiple``, without overlap: the fewest of at most ``tile`` a side (also multiples),
    as even as can be.

    >>> floor_tiles((1024, 1024), 512, 16)
    [(0, 0, 512, 512), (0, 512, 512, 512), (512, 0, 512, 512), (512, 512, 512, 512)]
    >>> [t[2:] for t in floor_tiles((520, 696), 512, 16)]  # padded to 528 x 704
    [(272, 352), (272, 352), (256, 352), (256, 352)]
    """
    axes = []
    for size in shape:
        units = -(-size // multiple)  # the padded side, in multiples
        n = -(-units * multiple // tile)
        sides = [(units // n + (i < units % n)) * multiple for i in range(n)]
        axes.append([(sum(sides[:i]), side) for i, side in enumerate(sides)])
    return [(y, x, h, w) for y, h in axes[0] for x, w in axes[1]]


def network_floor(runner: ModelRunner, image: np.ndarray, tile: int, multiple: int) -> float:
    """Seconds of the runner's forward passes over ``floor_tiles`` of ``image`` (one a pass)."""
    channels = runner.card.input_channels
    grey = image.mean(axis=-1, keepdims=True) if channels == 1 else image[..., :channels]
    data = np.moveaxis(grey.astype(np.float32) / 255.0, -1, 0)
    passes = []
    for y, x, h, w in floor_tiles(image.shape[:2], tile, multiple):
        batch = np.zeros((1, channels, h, w), np.float32)  # zeros where the padding is
        part = data[:, y : y + h, x : x + w]
        batch[0, :, : part.shape[1], : part.shape[2]] = part
        passes.append(batch)
    start = time.perf_counter()
    for batch in passes:
        runner.unet_probabilities(batch) if runner.onnx is None else runner.onnx(batch)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument(
        "--shapes", nargs="+", default=["256x256", "520x696", "1024x1024", "2048x2048"]
    )
    parser.add_argument("--tile", type=int, default=512, help="largest floor tile side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default="network_floor_cpu.json")
    args = parser.parse_args()

    device = resolve_device("cpu")
    loaded = load_weights(args.weights)
    params = PredictParams(device="cpu", overlap=None)
    runner = ModelRunner(loaded, device, backend=params.backend)
    multiple = tile_multiple(loaded.card)
    rows = []
    for name, image in compare_images(args.data_root, args.shapes):
        predict(image[:64, :64], loaded, params)  # warm-up, both pipelines and the floor
        with baseline_pipeline():
            predict(image[:64, :64], loaded, replace(params, backend="torch"))
        network_floor(runner, image[:64, :64], args.tile, multiple)
        times: dict[str, list[float]] = {"old": [], "new": [], "floor": []}
        network: list[float] = []
        for _ in range(args.repeats):  # interleaved: the machine's load hits all alike
            with baseline_pipeline():
                start = time.perf_counter()
                predict(image, loaded, replace(params, backend="torch"))
                times["old"].append(time.perf_counter() - start)
            start = time.perf_counter()
            prediction = predict(image, loaded, params)
            times["new"].append(time.perf_counter() - start)
            network.append(prediction.timings["network"])
            times["floor"].append(network_floor(runner, image, args.tile, multiple))
        best = {k: min(v) for k, v in times.items()}
        pixels = sum(t[2] * t[3] for t in floor_tiles(image.shape[:2], args.tile, multiple))
        row = {
            "image": name,
            "shape": list(image.shape[:2]),
            "engine": runner.backend_name,
            "floor_tiles": len(floor_tiles(image.shape[:2], args.tile, multiple)),
            "floor_pixels_per_image_pixel": pixels / (image.shape[0] * image.shape[1]),
            **{f"seconds_{k}": [round(t, 4) for t in v] for k, v in times.items()},
            "seconds_new_network": [round(t, 4) for t in network],
            "speedup_new": best["old"] / best["new"],
            "speedup_floor": best["old"] / best["floor"],
            "new_over_floor": best["new"] / best["floor"],
        }
        rows.append(row)
        print(
            f"{name}: old {best['old']:.2f} s, new {best['new']:.2f} s (x{row['speedup_new']:.2f}),"
            f" floor {best['floor']:.2f} s (x{row['speedup_floor']:.2f})",
            flush=True,
        )
    write_json(
        args.out,
        args.out_name,
        {"hardware": machine(device), "weights": args.weights.name, "repeats": args.repeats,
         "tile": args.tile, "results": rows},
    )  # fmt: skip
    print("| image | old s | new s | floor s | new / floor | speed-up new | bound (old / floor) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        old, new, floor = (min(r[f"seconds_{k}"]) for k in ("old", "new", "floor"))
        print(
            f"| {r['image']} | {old:.2f} | {new:.2f} | {floor:.2f} | {r['new_over_floor']:.2f} |"
            f" {r['speedup_new']:.2f}× | {r['speedup_floor']:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
