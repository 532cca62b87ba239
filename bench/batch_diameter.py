"""``cellseg batch`` on a folder of alike images: ``auto``, then the diameter its note gives.

A batch that estimates each image's object diameter ends with a note giving the median of
the estimates (``cli/batch.py``). This script copies ``--images`` DSB images of one shape
from the held-out validation split (520×696 by default, 12 there: one kind of fluorescence
image) into a folder, runs ``cellseg batch``
on it in a fresh process with the demo U-Net and ``diameter`` auto, reads the note's median,
runs the batch again with ``--diameter <median>``, and records both wall times, the
objects found and, where the data has masks, each run's mean DSB AP. Without the DSB data
(``--data`` missing) the bundled sample images stand in, whatever their shapes. Writes
bench/results/batch_diameter_cpu.json and prints a table::

    .venv/bin/python bench/batch_diameter.py --images 12
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import dsb_ap
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"
WEIGHTS = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
NOTE = re.compile(r"median (\d+) px \((\d+)-(\d+) px, (\d+) images\)")


def pick(data: Path, count: int, shape: tuple[int, int]) -> list[tuple[Path, Path | None]]:
    """``count`` images of ``shape`` of the seeded validation split (15 %, seed 0, as training
    holds out: the demo U-Net never trained on them), with their masks; the bundled samples
    without the data."""
    if not (data / "images").is_dir():
        images = sorted((ROOT / "sample_data" / "images").glob("*.png"))[:count]
        return [(p, ROOT / "sample_data" / "masks" / f"{p.stem}.tif") for p in images]
    _, validation = split_pairs(scan_training_folders([data]), 0.15, seed=0)
    chosen = [
        (pair.image_path, pair.mask_path)
        for pair in validation
        if np.asarray(read_image(pair.image_path).data).shape[:2] == shape
    ]
    return chosen[:count]


def batch(folder: Path, out: Path, weights: Path, *extra: str) -> tuple[float, str, str]:
    """Wall seconds, stdout and stderr of one ``cellseg batch`` process."""
    command = [sys.executable, "-m", "napari_cellseg.cli", "batch", str(folder), str(out)]
    command += ["--weights", str(weights), "--device", "cpu", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout, done.stderr


def mean_ap(pairs: list[tuple[Path, Path | None]], out: Path) -> float | None:
    """Mean DSB AP of a run's label files, where every image has a mask."""
    if not all(mask is not None and mask.exists() for _, mask in pairs):
        return None
    scores = [
        dsb_ap(read_labels(mask), read_labels(out / f"{image.stem}_labels.tif"))
        for image, mask in pairs
    ]
    return float(np.mean(scores))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=2, default=[520, 696])
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="batch_diameter_cpu.json")
    args = parser.parse_args()
    pairs = pick(args.data, args.images, tuple(args.shape))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for image, _ in pairs:
            shutil.copy(image, folder / image.name)
        auto_s, auto_out, auto_err = batch(folder, Path(tmp) / "auto", args.weights)
        note = NOTE.search(auto_err)
        runs = {"auto": {"seconds": auto_s, "summary": auto_out.strip(), "note": None}}
        runs["auto"]["dsb_ap"] = mean_ap(pairs, Path(tmp) / "auto")
        if note is not None:
            runs["auto"]["note"] = note[0]
            given_s, given_out, _ = batch(folder, Path(tmp) / "given", args.weights,
                                          "--diameter", note[1])  # fmt: skip
            runs["given"] = {
                "diameter": int(note[1]), "seconds": given_s, "summary": given_out.strip(),
                "dsb_ap": mean_ap(pairs, Path(tmp) / "given"),
            }  # fmt: skip
    record = {
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "weights": str(args.weights),
        "images": [image.name for image, _ in pairs],
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.name).write_text(json.dumps(record, indent=1))
    print("| run | wall s | objects and time (batch line) | mean DSB AP |")
    print("|---|---|---|---|")
    for name, run in runs.items():
        label = name if name == "auto" else f"--diameter {run['diameter']}"
        ap = "–" if run["dsb_ap"] is None else f"{run['dsb_ap']:.3f}"
        print(f"| {label} | {run['seconds']:.1f} | {run['summary']} | {ap} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
