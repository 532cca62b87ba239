"""Block-by-block labels against whole-plane labels, next to the floor: another tile grid.

A plane larger than ``block_pixels`` is segmented block by block (``iter_predict_large``),
and its labels are not pixel-identical to one whole-plane ``predict``. This script measures
how far they are apart, and compares that with how far two whole-plane runs are apart when
only their tile grid differs (the image shifted by ``--shift`` pixels, the same model and
settings): the difference tiling alone makes.

On a ``--size``² RGB mosaic of real DSB 2018 images, with the bundled demo U-Net:

- ``whole``: ``predict`` on the plane (the reference);
- ``blocks``: ``iter_predict_large`` with ``--block-size`` blocks and a ``--halo`` margin;
- ``shifted``: ``predict`` on the plane without its first ``--shift`` rows and columns, with
  the normalisation of the whole plane (as blocks get it), so that only the tile grid differs.
  A shift by a multiple of the network's stride (32 for the U-Net) moves only the tile seams;
  another shift also samples the image differently for the network (which is not exactly
  shift-invariant), as cropping an image differently would.

All are compared on the same region (the plane without its first ``max(--shift)`` +
``--margin`` rows and columns, so that objects cut by a shift are left out alike):
F1@0.5 and DSB AP, object counts, and the fraction of pixels whose foreground/background
differs. Writes ``bench/results/block_agreement_<device>.json``. Usage:

    .venv/bin/python bench/block_agreement.py
    .venv/bin/python bench/block_agreement.py --size 8192 --block-size 2048
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import rgb_mosaic

from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent
DSB = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train" / "images"


def mosaic(size: int, folder: Path, count: int) -> np.ndarray:
    """A mosaic of the first ``count`` images of ``folder`` (else of the bundled samples)."""
    from napari_cellseg.io.samples import sample_data_dir

    paths = sorted(folder.glob("*.png"))[:count] if folder.is_dir() else []
    if not paths:  # no shared data: the bundled samples
        paths = sorted((sample_data_dir() / "images").glob("*.png"))
    return rgb_mosaic(paths, size)


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    from napari_cellseg.labels.metrics import dsb_ap, matching_at

    match = matching_at(reference, other, 0.5)
    return {
        "f1@0.5": float(match["f1"]),
        "dsb_ap": float(dsb_ap(reference, other)),
        "objects": [int(len(np.unique(reference)) - 1), int(len(np.unique(other)) - 1)],
        "foreground_pixels_differing": float(np.mean((reference > 0) != (other > 0))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--halo", type=int, default=256)
    parser.add_argument(
        "--shift",
        type=int,
        nargs="+",
        default=[224, 200],
        help="rows/columns dropped, one run each (224: a multiple of the U-Net's stride 32)",
    )
    parser.add_argument("--margin", type=int, default=64, help="further rows/columns ignored")
    parser.add_argument("--images", type=Path, default=DSB, help="DSB images for the mosaic")
    parser.add_argument("--count", type=int, default=200, help="distinct images in the mosaic")
    parser.add_argument("--tile", type=int, default=PredictParams().tile_size)
    parser.add_argument("--overlap", type=int, default=PredictParams().overlap)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from dataclasses import replace

    import torch

    from napari_cellseg.events import drain
    from napari_cellseg.inference.block_reading import plane_normalisation
    from napari_cellseg.inference.blocks import iter_predict_large
    from napari_cellseg.inference.planes import predict_planes
    from napari_cellseg.models import list_bundled_weights, load_weights
    from napari_cellseg.params import BlockOptions

    weights = next(p for p in list_bundled_weights() if p.name == "unet_dsb.safetensors")
    model = load_weights(weights, device=args.device)
    image = mosaic(args.size, args.images, args.count)
    params = PredictParams(
        device=args.device, axes="YXC", tile_size=args.tile, overlap=args.overlap
    )
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    whole = predict_planes(image, model, params).labels
    seconds["whole"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    options = BlockOptions(block_size=args.block_size, halo=args.halo)
    blocks = drain(iter_predict_large(image, model, params, blocks=options)).labels
    seconds["blocks"] = time.perf_counter() - t0

    norm = plane_normalisation(image, model.card)  # the whole plane's, as blocks use
    fixed = replace(model, card=replace(model.card, normalisation=norm), notes=[])
    m = max(args.shift) + args.margin
    region = (slice(m, None), slice(m, None))
    results = {"blocks_vs_whole": compare(whole[region], blocks[region])}
    for s in args.shift:
        t0 = time.perf_counter()
        shifted = predict_planes(np.ascontiguousarray(image[s:, s:]), fixed, params).labels
        seconds[f"shifted_{s}"] = time.perf_counter() - t0
        results[f"shifted_{s}_vs_whole"] = compare(whole[region], shifted[m - s :, m - s :])
    out = {
        "what": "labels of block-by-block inference vs whole-plane inference, beside two "
        "whole-plane runs whose tile grids differ by a shift (the floor tiling sets)",
        "hardware": {
            "platform": platform.platform(),
            "device": args.device,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {
            "size": args.size,
            "block_size": args.block_size,
            "halo": args.halo,
            "shift": args.shift,
            "margin": args.margin,
            "compared_region": f"rows and columns {m}..{args.size}",
            "weights": weights.name,
            "tile_size": params.tile_size,
            "overlap": params.overlap,
            "mosaic_images": args.count,
        },
        "seconds": seconds,
        "results": results,
    }
    path = args.out or ROOT / "bench" / "results" / f"block_agreement_{args.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("| pair | F1@0.5 | DSB AP | objects | foreground pixels differing |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['f1@0.5']:.3f} | {r['dsb_ap']:.3f} | {r['objects'][0]} / "
            f"{r['objects'][1]} | {100 * r['foreground_pixels_differing']:.2f} % |"
        )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
