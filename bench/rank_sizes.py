"""What size the ranking sees, and whether its order follows the objects there are to correct.

``cellseg rank`` (``napari_cellseg.batch.ranking``) segments each image at an object
diameter: the one given, or, with ``auto``, the model's estimate for that image. A base
model far from the user's objects (the demo nuclei U-Net on GlaS glands) estimates sizes that
swing image by image, and its ranking then puts its own failures first (thousands of specks
in an image it magnified) rather than the images with the most to correct. This script ranks
one folder of annotated images (default: GlaS ``train``, the pool of ``bench/hitl.py
--domain glas``) with a base model, once with the model's own size and once at each
``--diameters`` N, and compares each ranking with the ground truth:

- the per-image size estimates (5th / 50th / 95th percentile, the top 10's), next to the
  ground-truth objects' median equivalent diameter;
- per ranking: its Spearman rank correlation between each image's total doubt and its
  number of ground-truth objects, the ground-truth objects in its top 3 (against the 5th /
  50th / 95th percentile of 3 images drawn at random, 2000 seeded draws), the objects the
  model found, and the seconds it took.

The ranking covers the whole folder (``bench/hitl.py`` ranks it less the seed's validation
image). JSON to ``bench/results/rank_sizes_<name>.json`` and a Markdown table:

    .venv/bin/python bench/rank_sizes.py --diameters auto 60 80 100 120 150
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json
from scipy.stats import spearmanr

from napari_cellseg.batch.ranking import rank_images
from napari_cellseg.diameters import parse_diameter
from napari_cellseg.io.images import read_labels
from napari_cellseg.labels.sizes import equivalent_diameters
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams
from napari_cellseg.training.pairs import scan_training_folders

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = ROOT.parent / "shared" / "data" / "glas" / "train"
DEFAULT_WEIGHTS = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
TOP = 3  # the images a user corrects first, as in bench/hitl.py


def truth_of(pairs) -> tuple[dict[str, int], list[float]]:
    """Each image's number of ground-truth objects (by file name) and all their diameters."""
    counts, diameters = {}, []
    for pair in pairs:
        sizes = equivalent_diameters(read_labels(pair.mask_path))
        counts[pair.image_path.name] = len(sizes)
        diameters += sizes.tolist()
    return counts, diameters


def random_top(counts: list[int], n: int = TOP, draws: int = 2000) -> list[int]:
    """5th / 50th / 95th percentile of the objects in ``n`` images drawn at random.

    >>> random_top([1, 1, 1, 1], n=3, draws=10)
    [3, 3, 3]
    """
    rng, n = random.Random(0), min(n, len(counts))
    sums = [sum(rng.sample(counts, n)) for _ in range(draws)]
    return [int(np.percentile(sums, q)) for q in (5, 50, 95)]


def percentiles(values, qs=(5, 50, 95)) -> list[float]:
    """Rounded percentiles of ``values`` (empty list for none).

    >>> percentiles([1.0, 2.0, 3.0])
    [1.1, 2.0, 2.9]
    """
    values = [v for v in values if v is not None]
    return [round(float(np.percentile(values, q)), 1) for q in qs] if values else []


def one_ranking(pairs, loaded, diameter, counts: dict[str, int]) -> dict:
    """Rank ``pairs`` at ``diameter``; how the order follows ``counts``."""
    params = PredictParams(device="cpu", diameter=diameter)
    start = time.perf_counter()
    ranked = rank_images([p.image_path for p in pairs], loaded, params)
    seconds = time.perf_counter() - start
    names = [Path(r.path).name for r in ranked]
    doubt = [r.total_doubt for r in ranked]
    truth = [counts[name] for name in names]
    rho = spearmanr(doubt, truth).statistic if len(set(doubt)) > 1 else float("nan")
    return {
        "diameter": diameter,
        "seconds": round(seconds, 1),
        "spearman_total_doubt_vs_truth_objects": round(float(rho), 3),
        "truth_objects_in_top_3": sum(truth[:TOP]),
        "top_10": [
            {
                "image": n,
                "diameter": None if r.diameter is None else round(r.diameter, 1),
                "objects_found": r.n_objects,
                "total_doubt": r.total_doubt,
                "truth_objects": t,
            }
            for n, r, t in zip(names[:10], ranked[:10], truth[:10], strict=True)
        ],
        "size_percentiles_5_50_95": percentiles([r.diameter for r in ranked]),
        "objects_found_median": int(np.median([r.n_objects for r in ranked])),
        "objects_found_max": max(r.n_objects for r in ranked),
    }


def table(result: dict) -> str:
    """The Markdown table of a result."""
    lines = [
        "| ranked at | sizes seen px (5th / 50th / 95th) | top 10's sizes px | objects found "
        "(median / max) | Spearman total doubt vs true objects | true objects in top 3 | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rankings"]:
        sizes = [t["diameter"] for t in r["top_10"] if t["diameter"] is not None]
        span = f"{min(sizes)}–{max(sizes)}" if sizes else "–"
        seen = " / ".join(str(v) for v in r["size_percentiles_5_50_95"]) or "–"
        lines.append(
            f"| {r['diameter'] or 'default'} | {seen} | {span} | {r['objects_found_median']} / "
            f"{r['objects_found_max']} | {r['spearman_total_doubt_vs_truth_objects']:.2f} | "
            f"{r['truth_objects_in_top_3']} | {r['seconds']:.0f} |"
        )
    low, mid, high = result["random_top_3_truth_objects_5_50_95"]
    lines.append(
        f"\n{result['images']} images, {result['truth_objects']} true objects of median "
        f"diameter {result['truth_diameter_median']} px; 3 random images hold {mid} true "
        f"objects (5th–95th percentile {low}–{high})."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help="a training folder (images/, masks/); default GlaS train")  # fmt: skip
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--diameters", nargs="+", default=["auto", "60", "80", "100", "120", "150"],
                        help="sizes to rank at: auto (the model's estimate per image), default "
                        "(the model's card's), off, or px")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="glas", help="rank_sizes_<name>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    pairs = scan_training_folders([args.folder])[: args.limit]
    if not pairs:
        sys.exit(f"no image/mask pairs in {args.folder}: give a folder with images/ and masks/")
    counts, diameters = truth_of(pairs)
    loaded = load_weights(args.weights)
    result = {
        "folder": str(args.folder),
        "weights": args.weights.name,
        "images": len(pairs),
        "truth_objects": sum(counts.values()),
        "truth_diameter_median": round(float(np.median(diameters)), 1) if diameters else None,
        "random_top_3_truth_objects_5_50_95": random_top(list(counts.values())),
        "machine": machine(torch.device("cpu")),
        "rankings": [],
    }
    for text in args.diameters:
        diameter = None if text == "default" else parse_diameter(text)
        result["rankings"].append(one_ranking(pairs, loaded, diameter, counts))
        print(f"ranked at {text}: {result['rankings'][-1]['seconds']} s", flush=True)
    write_json(args.out, f"rank_sizes_{args.name}.json", result)
    print(table(result))


if __name__ == "__main__":
    main()
