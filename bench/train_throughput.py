"""Training throughput: random crops per second while ``cellseg train``'s engine trains.

Trains one family from scratch for a fixed time on a folder of images and masks and reports
the crops (and megapixels) seen per second, epoch by epoch, without validation. Writes
JSON to bench/results/train_throughput_<device>.json. Example (one minute on a GPU):

    .venv/bin/python bench/train_throughput.py --device cuda --seconds 60

``--layouts channels-last contiguous`` also trains with the batches in the contiguous layout
used before U-Net batches went in channels-last (the baseline, same run, alternating), and
``--name`` writes to another JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from napari_cellseg.device import resolve_device
from napari_cellseg.params import TrainParams
from napari_cellseg.training import unet_steps
from napari_cellseg.training.loop import fit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"


LAYOUTS = ("channels-last", "contiguous")


def batch_layout(layout: str) -> contextlib.AbstractContextManager:
    """Today's channels-last U-Net batches, or the contiguous ones used before."""
    if layout == "channels-last":
        return contextlib.nullcontext()
    patch = contextlib.ExitStack()
    saved = unet_steps.channels_last
    unet_steps.channels_last = lambda images: images
    patch.callback(setattr, unet_steps, "channels_last", saved)
    return patch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["unet"])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per family")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--encoder", default="resnet34", help="U-Net encoder / R-CNN backbone")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--samples-per-epoch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images/ + masks/")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--layouts", nargs="+", default=["channels-last"], choices=LAYOUTS,
        help="memory layouts of the U-Net's batches to compare (contiguous: the old one)",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="JSON file name in --out")
    args = parser.parse_args()
    device = resolve_device(args.device)
    results = []
    for family, layout in [(f, lay) for f in args.families for lay in args.layouts]:
        builder = (
            {"encoder_name": args.encoder, "in_channels": 3, "classes": 3}
            if family == "unet"
            else {"backbone": args.encoder, "num_classes": 2}
        )
        params = TrainParams(
            family=family,
            builder_args=builder,
            epochs=100_000,
            minutes=args.seconds / 60,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            samples_per_epoch=args.samples_per_epoch,
            val_fraction=0.0,
            device=str(device),
            num_workers=args.workers,
            early_stopping_patience=None,
        )
        with tempfile.TemporaryDirectory() as tmp, batch_layout(layout):
            start = time.perf_counter()
            finished = fit([args.data], Path(tmp) / "model.safetensors", params)
            seconds = time.perf_counter() - start
        crops = finished.epochs_run * args.samples_per_epoch
        row = {
            "family": family,
            "layout": layout,
            "device": str(device),
            "builder_args": builder,
            "batch_size": args.batch_size,
            "patch_size": args.patch_size,
            "epochs": finished.epochs_run,
            "seconds": seconds,
            "crops_per_s": crops / seconds,
            "mpix_per_s": crops * args.patch_size**2 / 1e6 / seconds,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    hardware = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (args.name or f"train_throughput_{device.type}.json")
    path.write_text(json.dumps({"hardware": hardware, "results": results}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
