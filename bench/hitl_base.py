"""Build the base model of ``bench/hitl.py``: a U-Net that never saw the left-out domains.

The base is trained from scratch (``cellseg train --model unet`` defaults: a ResNet-34
U-Net of depth 5, unless ``--builder-args`` names another, e.g. the demo's ResNet-18 of
depth 4, which the bases before session 11 used) on the
**fluorescence** images of the DSB 2018 training split only (``split_pairs(..., 0.15,
seed=0)``, the demo models' split); it validates on the first ``--n-val`` fluorescence
images of the held-out split. The colour H&E/brightfield tiles and the grey brightfield
images take no part: not in training, not in choosing the best epoch, not in thresholds.
GlaS glands are not in DSB at all. A run of ``cellseg train`` does the training; this
script only picks the images and records what it did next to the weights
(``<out>.json``).

    .venv/bin/python bench/hitl_base.py --minutes 32 \\
        --out ~/.cache/napari-cellseg/base-fluo.safetensors
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hitl import DATA, image_kind, link_folder

from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs


def fluorescence_split(n_val: int):
    """(train, val): the fluorescence pairs of the demo split's two parts."""
    train, val = split_pairs(scan_training_folders([DATA / "dsb2018" / "stage1_train"]), 0.15, 0)
    train = [p for p in train if image_kind(p.image_path) == "fluorescence"]
    val = [p for p in val if image_kind(p.image_path) == "fluorescence"][:n_val]
    return train, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=32.0)
    parser.add_argument("--n-val", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--builder-args", default=None, help="JSON, as cellseg train takes it")
    args = parser.parse_args()
    train, val = fluorescence_split(args.n_val)
    print(f"{len(train)} training and {len(val)} validation fluorescence images", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cellseg = Path(sys.executable).with_name("cellseg")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        command = [
            str(cellseg), "train", "--model", "unet", "--data", str(link_folder(train, tmp / "t")),
            "--val", str(link_folder(val, tmp / "v")), "--minutes", str(args.minutes),
            "--seed", str(args.seed), "--out", str(args.out),
        ]  # fmt: skip
        if args.builder_args:
            command += ["--builder-args", args.builder_args]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
    record = {
        "command": " ".join(command[1:]),
        "train_images": len(train),
        "val_images": [p.name for p in val],
        "minutes": args.minutes,
        "seconds": round(seconds, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record | {"val_images": len(val)}))


if __name__ == "__main__":
    main()
