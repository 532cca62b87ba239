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
  cannot take less. With ``--two-sessions`` the floor is also timed on two one-thread
  sessions of the same graph running half the tiles each at once (``two_sessions_gain``:
  whether splitting the cores between tiles would beat one session on both).

``old / floor`` is then the largest speed-up any float32 pipeline could show against the old
one with this network; where it is below 3, the float32 target cannot be met by changing
the pipeline, only by computing less (fewer pixels, a smaller network) or in lower precision
(``--backend bf16`` / ``int8``, measured in ``inference.py``). Writes
``bench/results/network_floor_cpu.json`` (``--out-name``) and prints a table::

    .venv/bin/python bench/network_floor.py --repeats 5 --two-sessions
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _baseline import baseline_pipeline
from _common import machine, write_json

from inference import DEFAULT_DATA, ROOT, compare_images, timed
from napari_cellseg.device import resolve_device
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.inference.onnx_backend import OnnxUNet
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


def floor_passes(image: np.ndarray, channels: int, tiles: list[tuple[int, ...]]) -> list:
    """The ``tiles`` (:func:`floor_tiles`) of ``image`` as network inputs ``(1, C, h, w)``,
    zeros as padding."""
    grey = image.mean(axis=-1, keepdims=True) if channels == 1 else image[..., :channels]
    data = np.moveaxis(grey.astype(np.float32) / 255.0, -1, 0)
    passes = []
    for y, x, h, w in tiles:
        batch = np.zeros((1, channels, h, w), np.float32)
        part = data[:, y : y + h, x : x + w]
        batch[0, :, : part.shape[1], : part.shape[2]] = part
        passes.append(batch)
    return passes


def timed_passes(engines: list, passes: list) -> float:
    """Seconds to run ``passes``: one engine in turn, or several at once in threads, each
    taking every n-th pass (ONNX Runtime lets go of the GIL while it runs)."""
    start = time.perf_counter()
    if len(engines) == 1:
        for batch in passes:
            engines[0](batch)
    else:

        def work(k: int) -> None:
            for batch in passes[k :: len(engines)]:
                engines[k](batch)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(engines))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
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
    parser.add_argument(
        "--two-sessions", action="store_true",
        help="also time the floor on two one-thread sessions at once",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default="network_floor_cpu.json")
    args = parser.parse_args()

    device = resolve_device("cpu")
    loaded = load_weights(args.weights)
    params = PredictParams(device="cpu", overlap=None)
    runner = ModelRunner(loaded, device, backend=params.backend)
    multiple = tile_multiple(loaded.card)
    engine = runner.unet_probabilities if runner.onnx is None else runner.onnx
    # the same graph on one thread each, two at once: does splitting the cores between
    # tiles beat one session on both? (ONNX Runtime only)
    pair = []
    if runner.onnx is not None and args.two_sessions:
        pair = [OnnxUNet(runner.onnx.path, 1, keep_optimized=True) for _ in range(2)]
    rows = []
    for name, image in compare_images(args.data_root, args.shapes):
        predict(image[:64, :64], loaded, params)  # warm-up, both pipelines and the floor
        with baseline_pipeline():
            predict(image[:64, :64], loaded, replace(params, backend="torch"))
        tiles = floor_tiles(image.shape[:2], args.tile, multiple)
        passes = floor_passes(image, loaded.card.input_channels, tiles)
        for warm in ([engine], pair) if pair else ([engine],):
            timed_passes(warm, passes[:2])
        times: dict[str, list[float]] = {"old": [], "new": [], "floor": []}
        times |= {"floor_two_sessions": []} if pair else {}
        network: list[float] = []
        for _ in range(args.repeats):  # interleaved: the machine's load hits all alike
            with baseline_pipeline():
                _, seconds = timed(device, predict, image, loaded, replace(params, backend="torch"))
                times["old"].append(seconds)
            prediction, seconds = timed(device, predict, image, loaded, params)
            times["new"].append(seconds)
            network.append(prediction.timings["network"])
            times["floor"].append(timed_passes([engine], passes))
            if pair:
                times["floor_two_sessions"].append(timed_passes(pair, passes))
        best = {k: min(v) for k, v in times.items()}
        pixels = sum(h * w for _, _, h, w in tiles)
        row = {
            "image": name,
            "shape": list(image.shape[:2]),
            "engine": runner.backend_name,
            "floor_tiles": len(tiles),
            "floor_pixels_per_image_pixel": pixels / (image.shape[0] * image.shape[1]),
            **{f"seconds_{k}": [round(t, 4) for t in v] for k, v in times.items()},
            "seconds_new_network": [round(t, 4) for t in network],
            "speedup_new": best["old"] / best["new"],
            "speedup_floor": best["old"] / best["floor"],
            "new_over_floor": best["new"] / best["floor"],
        }
        if pair:  # > 1: two one-thread sessions at once beat one on both cores
            row["two_sessions_gain"] = best["floor"] / best["floor_two_sessions"]
        rows.append(row)
        print(
            f"{name}: old {best['old']:.2f} s, new {best['new']:.2f} s (x{row['speedup_new']:.2f}),"
            f" floor {best['floor']:.2f} s (x{row['speedup_floor']:.2f})"
            + (f", two sessions x{row['two_sessions_gain']:.3f}" if pair else ""),
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
