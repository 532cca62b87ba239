"""Validate on a strip of every corrected image instead of on one whole image.

The human-in-the-loop runs (``bench/hitl.py``, ``hitl_rounds.py``) found their weak judge in
the validation: one image of a few objects (4-12 glands on GlaS) chooses the best epoch and
decides whether the base is handed back. With the same 4 corrected images, this script
compares two ways to split them:

- ``image``: 3 images train, 1 whole image validates (``hitl.choose(..., paired=True)``, the
  benchmark's protocol and the round 1 of ``hitl_rounds.py``, whose kept models ``--keep``
  reuses);
- ``strips``: all 4 train outside a band across each image, holding ``--share`` of its
  longer side (seeded position), and the 4 bands validate: the same share of the corrected
  pixels validates, but its objects come from every image. Region masks
  (``regions/<name>.tif``, :mod:`napari_cellseg.training.regions`) carry the split: the loss
  ignores the band, validation scores only inside it.

Both fine-tune the base with the fast recipe for ``--minutes`` and are scored on the test
images. Writes ``bench/results/hitl_strips_<domain>.json`` and prints a table::

    .venv/bin/python bench/hitl_strips.py --base sample_data/models/unet_dsb.safetensors \\
        --domain glas --minutes 5 --seeds 0 1 2 3 4 --keep ~/.cache/napari-cellseg/hitl
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hitl import (
    choose,
    domain_split,
    fine_tune,
    header,
    link_folder,
    loop_parser,
    record_seeds,
    round_one,
    score,
)

from napari_cellseg.io.images import read_labels
from napari_cellseg.training.regions import REGIONS_DIR

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("image", "strips")


def band(shape: tuple[int, int], share: float, rng: random.Random) -> np.ndarray:
    """A bool mask of ``shape``: a band across the longer side, ``share`` of it thick.

    >>> band((4, 10), 0.2, random.Random(0)).sum(axis=0).tolist()
    [0, 0, 0, 0, 0, 0, 4, 4, 0, 0]
    """
    long_axis = int(np.argmax(shape))
    side = shape[long_axis]
    thick = max(1, round(side * share))
    start = rng.randrange(side - thick + 1)
    mask = np.zeros(shape, bool)
    index = [slice(None), slice(None)]
    index[long_axis] = slice(start, start + thick)
    mask[tuple(index)] = True
    return mask


def strip_folders(pairs, root: Path, share: float, seed: int) -> tuple[Path, Path]:
    """A training and a validation folder of ``pairs`` split by a band in each image."""
    rng = random.Random(5000 + seed)
    train, val = link_folder(pairs, root / "train"), link_folder(pairs, root / "val")
    for folder in (train, val):
        (folder / REGIONS_DIR).mkdir()
    for pair in pairs:
        held = band(read_labels(pair.mask_path).shape[-2:], share, rng)
        name = f"{pair.image_path.name.rsplit('.', 1)[0]}.tif"
        tifffile.imwrite(train / REGIONS_DIR / name, (~held).astype(np.uint8))
        tifffile.imwrite(val / REGIONS_DIR / name, held.astype(np.uint8))
    return train, val


def run_seed(
    base: Path, pool, test, seed: int, minutes: float, share: float, keep, splits=SPLITS
) -> dict:
    """The ``splits`` of one seed's 4 images (``image``: kept in ``keep``, reused from it)."""
    first, val, _ = choose(pool, "random", seed, base, n=3, paired=True)
    record: dict = {"seed": seed, "images": [p.name for p in first], "val_image": val[0].name}
    with tempfile.TemporaryDirectory() as tmp:
        if "image" in splits:
            _, record["image"] = round_one(
                keep, Path(tmp), f"rounds_seed{seed}_round1", base, first, val, test, seed, minutes
            )
            print(json.dumps({"seed": seed, "image": record["image"]["test"]}), flush=True)
        if "strips" in splits:
            train_dir, val_dir = strip_folders(first + val, Path(tmp) / "strips", share, seed)
            out = Path(tmp) / "strips.safetensors"
            folders = (train_dir, val_dir)
            tuned = fine_tune(base, None, None, out, "fast", seed, minutes, folders=folders)
            tuned["test"] = score(out, test, None)  # a kept base is scored too: cheap here
            record["strips"] = tuned
            print(json.dumps({"seed": seed, "strips": tuned["test"]}), flush=True)
    return record


def merged(earlier: list[dict], record: dict) -> dict:
    """``record`` with the splits an earlier run of its seed made and this one did not; an
    earlier ``image`` model reused from ``--keep`` and made anew here stays as ``image_kept``.

    >>> old = {"seed": 1, "image": {"reused": "m"}, "strips": {"t": 2}}
    >>> merged([old], {"seed": 1, "image": {"t": 3}})
    {'seed': 1, 'image': {'t': 3}, 'strips': {'t': 2}, 'image_kept': {'reused': 'm'}}
    """
    old = next((s for s in earlier if s["seed"] == record["seed"]), {})
    out = {**old, **record}
    made_anew = "image" in record and "reused" not in record["image"]
    if made_anew and "reused" in old.get("image", {}):
        out["image_kept"] = old["image"]
    return out


def table(seeds: list[dict]) -> str:
    """Per seed, test DSB AP of both splits, and their means."""
    lines = [
        "| seed | 1 image validates | strips of 4 validate | strips − image |",
        "|---|---|---|---|",
    ]
    seeds = [s for s in seeds if all(k in s for k in SPLITS)]
    if not seeds:
        return "\n".join(lines)
    pairs = [(s["image"]["test"]["dsb_ap"], s["strips"]["test"]["dsb_ap"]) for s in seeds]
    for s, (a, b) in zip(seeds, pairs, strict=True):
        lines.append(f"| {s['seed']} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    a, b = (float(np.mean(x)) for x in zip(*pairs, strict=True))
    lines.append(f"| mean | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = loop_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--share", type=float, default=0.25, help="each band's share of its side")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    args = parser.parse_args()
    pool, test = domain_split(args.domain, args.n_test)
    out = args.out or ROOT / "bench" / "results" / f"hitl_strips_{args.domain}.json"
    keep = args.keep / args.domain if args.keep else None
    earlier = json.loads(out.read_text()) if out.exists() else {}
    result = {**header(args, pool, test), "share": args.share}

    def work(seed: int) -> dict:
        record = run_seed(args.base, pool, test, seed, args.minutes, args.share, keep, args.splits)
        return merged(earlier.get("seeds", []), record)

    record_seeds(result, out, args.seeds, work, table)
    done = {s["seed"] for s in result["seeds"]}
    result["seeds"] += [s for s in earlier.get("seeds", []) if s["seed"] not in done]
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
