"""Mask R-CNN: DSB AP for each mask grid (``mask_roi_size``), on training-split images.

The mask head is convolutional, so the RoIAlign grid it reads per object can differ from the
one it was trained at (torchvision's 14×14). This chooses the grid for a weight file's card
on images of the DSB 2018 *training* split (the seeded 85 % that ``cellseg train`` trains
on; never the validation split), spread evenly over it, with the card's thresholds and
``diameter`` auto. Writes bench/results/mask_grid_train.json and prints a table:

    .venv/bin/python bench/mask_grid.py --images 40 --grids 14 17 19 21 23 25 28
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from napari_cellseg.inference import predict
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import evaluate_pair
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/maskrcnn_dsb.safetensors"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--grids", type=int, nargs="+", default=[14, 17, 19, 21, 23, 25, 28])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="mask_grid_train.json")
    args = parser.parse_args()
    train, _ = split_pairs(scan_training_folders([args.data]), 0.15, seed=0)
    pairs = train[:: max(1, len(train) // args.images)][: args.images]
    loaded = load_weights(args.weights)
    pool = loaded.model.roi_heads.mask_roi_pool
    scores: dict[int, list[float]] = {g: [] for g in args.grids}
    for pair in pairs:
        image, truth = read_image(pair.image_path).data, read_labels(pair.mask_path)
        for grid in args.grids:
            pool.output_size = (grid, grid)
            labels = predict(image, loaded, PredictParams(device="cpu")).labels
            scores[grid].append(evaluate_pair(truth, labels)["dsb_ap"])
    rows = [
        {"mask_roi_size": g, "dsb_ap": float(np.mean(s)), "per_image": s} for g, s in scores.items()
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / args.name
    record = {
        "machine": platform.processor() or platform.machine(),
        "weights": args.weights.name,
        "split": "training (split_pairs 0.15, seed 0), every k-th image",
        "images": [p.name for p in pairs],
        "results": rows,
    }
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    print("| mask grid | DSB AP |\n|---|---|")
    for row in rows:
        print(f"| {row['mask_roi_size']} | {row['dsb_ap']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
