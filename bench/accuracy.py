"""Accuracy benchmark: train each family with `cellseg train`'s engine, score held-out images.

- DSB 2018: train on a seeded split of ../shared/data/dsb2018/stage1_train, score the held-out
  validation split (DSB AP over IoU 0.5:0.95, AP/F1 at 0.5, pixel IoU).
- GlaS: train on glas/train (best epoch chosen on a seeded 15 % split of it), score glas/testA
  (object F1, object Dice, object Hausdorff).

Writes bench/results/accuracy_<device>.json and prints a Markdown table beside the published
numbers of ../shared/data/README.md. Examples:

    .venv/bin/python bench/accuracy.py --datasets dsb --families unet --minutes 20
    .venv/bin/python bench/accuracy.py --device cuda --minutes 5            # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from napari_cellseg.device import resolve_device
from napari_cellseg.inference import predict
from napari_cellseg.inference.model_runner import clear_model_cache
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import evaluate_pair, summarise
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams, TrainParams
from napari_cellseg.training.loop import fit
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
PUBLISHED = {
    "dsb": {
        "U-Net ResNet34 (same-work anchor, 4 min H100)": {"dsb_ap": 0.56},
        "Cellpose 3 (same-work anchor)": {"dsb_ap": 0.54},
        "Mask R-CNN R50-FPN (same-work anchor, 5 min H100)": {"dsb_ap": 0.48},
        "Kaggle DSB 2018 winner (stage 2)": {"dsb_ap": 0.632},
    },
    "glas": {
        "GlaS 2015 winner, test A": {
            "glas_object_f1": 0.912,
            "glas_object_dice": 0.897,
            "glas_object_hausdorff": 45.4,
        }
    },
}
ARCHITECTURES = {
    ("unet", "dsb"): {"encoder_name": "resnet34", "in_channels": 3, "classes": 3},
    ("unet", "glas"): {"encoder_name": "resnet34", "in_channels": 3, "classes": 3},
    ("maskrcnn", "dsb"): {
        "backbone": "resnet50",
        "num_classes": 2,
        "min_size": 512,
        "max_size": 1024,
    },
    ("maskrcnn", "glas"): {
        "backbone": "resnet50",
        "num_classes": 2,
        "min_size": 512,
        "max_size": 1024,
        "anchor_sizes": [[32], [64], [128], [256], [512]],
    },
}


def score(weights: Path, pairs, device: str, tile: int) -> dict:
    """Mean metrics of a weight file over image/mask pairs (inference exactly as the CLI)."""
    rows = []
    for pair in pairs:
        image = read_image(pair.image_path)
        pred = predict(
            image.data, weights, PredictParams(device=device, tile_size=tile, axes=image.axes)
        )
        rows.append(evaluate_pair(read_labels(pair.mask_path), pred.labels))
    return summarise(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["unet", "maskrcnn"])
    parser.add_argument("--datasets", nargs="+", default=["dsb", "glas"])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--max-eval", type=int, default=None, help="score at most N images")
    parser.add_argument(
        "--encoder", default=None, help="U-Net encoder / Mask R-CNN backbone (default: the table's)"
    )
    parser.add_argument("--samples-per-epoch", type=int, default=None)
    parser.add_argument("--out-name", default=None, help="JSON file name in --out")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for dataset in args.datasets:
        if dataset == "dsb":
            pairs = scan_training_folders([args.data_root / "dsb2018" / "stage1_train"])
            train, test = split_pairs(pairs, 0.15, seed=0)
            train_dirs, val_dirs = [args.data_root / "dsb2018" / "stage1_train"], None
        else:
            # the best epoch is chosen on a split of train; testA is only scored at the end
            train_dirs, val_dirs = [args.data_root / "glas" / "train"], None
            train = scan_training_folders(train_dirs)
            test = scan_training_folders([args.data_root / "glas" / "testA"])
        test = test[: args.max_eval] if args.max_eval else test
        for family in args.families:
            weights = args.out / f"accuracy_{family}_{dataset}.safetensors"
            builder = dict(ARCHITECTURES[(family, dataset)])
            if args.encoder:
                builder["encoder_name" if family == "unet" else "backbone"] = args.encoder
            params = TrainParams(
                family=family,
                builder_args=builder,
                epochs=10_000,
                minutes=args.minutes,
                batch_size=args.batch_size,
                patch_size=args.patch_size if dataset == "dsb" else max(args.patch_size, 384),
                samples_per_epoch=args.samples_per_epoch or max(256, args.batch_size * 32),
                val_fraction=0.15,
                device=str(device),
                num_workers=args.workers,
                early_stopping_patience=None,
            )
            start = time.perf_counter()
            finished = fit(train_dirs, weights, params, val=val_dirs)
            train_s = time.perf_counter() - start
            clear_model_cache()
            start = time.perf_counter()
            metrics = score(weights, test, str(device), 512)
            row = {
                "dataset": dataset,
                "family": family,
                "device": str(device),
                "builder_args": builder,
                "train_minutes": train_s / 60,
                "epochs": finished.epochs_run,
                "best_epoch": finished.best_epoch,
                "n_train": len(train),
                "n_test": len(test),
                "eval_seconds": time.perf_counter() - start,
                "parameters_m": sum(t.numel() for t in load_weights(weights).model.parameters())
                / 1e6,
                **metrics,
            }
            results.append(row)
            print(json.dumps(row))
    hardware = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    path = args.out / (args.out_name or f"accuracy_{device.type}.json")
    path.write_text(
        json.dumps({"hardware": hardware, "results": results, "published": PUBLISHED}, indent=2)
    )
    print(f"wrote {path}")
    print(
        "| data | model | device | train min | epochs | DSB AP | F1@0.5 | GlaS F1 | "
        "obj. Dice | obj. Hausdorff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['dataset']} | {r['family']} | {r['device']} | {r['train_minutes']:.1f} | "
            f"{r['epochs']} | {r['dsb_ap']:.3f} | {r['f1@0.5']:.3f} | "
            f"{r['glas_object_f1']:.3f} | {r['glas_object_dice']:.3f} | "
            f"{r['glas_object_hausdorff']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
