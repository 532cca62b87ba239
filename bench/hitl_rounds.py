"""Human in the loop, second round: does the fine-tuned model's ranking choose better images?

``bench/hitl.py`` ranks with the base model, before any correction. In the product's loop
the user ranks again after the first fine-tune, with a model that has now seen the objects.
Per seed (paired, as ``hitl.py --paired``: the same validation image for every choice):

1. round 1: the 3 images ``hitl.py`` draws at random for that seed, fine-tuned from the base
   (``fast`` recipe, ``--minutes``) into model M1, scored on the test images;
2. round 2, twice from M1: 3 more images, either the top 3 of the remaining pool ranked by M1
   (``cellseg rank``'s default order, total doubt, with M1's default diameter) or 3 drawn at
   random from the same remaining pool; M1 fine-tuned on all 6 for ``--minutes`` more, then
   scored. A fine-tune that beats M1 on no epoch hands M1 back (the never-worse rule), and
   is scored as M1.

The ranking is judged on the test images only, which nothing here chooses from. Writes
``bench/results/hitl_rounds_<domain>.json`` (``--out``) after each seed and prints a table::

    .venv/bin/python bench/hitl_rounds.py --base sample_data/models/unet_dsb.safetensors \\
        --domain glas --minutes 5 --seeds 0 1 2
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
from hitl import (
    choose,
    domain_split,
    fine_tune,
    header,
    kept_model,
    loop_parser,
    record_seeds,
    score,
)

from napari_cellseg.batch.ranking import rank_images
from napari_cellseg.io.images import read_labels
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent


def objects(pairs) -> int:
    """Objects in the ground truth of ``pairs`` (what the user would have corrected)."""
    return sum(int(read_labels(p.mask_path).max()) for p in pairs)


def ranked_top(pool, weights: Path, n: int = 3) -> tuple[list, list[str]]:
    """The ``n`` images of ``pool`` that ``weights`` ranks first (default order), and why."""
    loaded = load_weights(weights)
    ranking = rank_images([p.image_path for p in pool], loaded, PredictParams(device="cpu"))
    by_path = {p.image_path: p for p in pool}
    top = [by_path[Path(r.path)] for r in ranking[:n]]
    return top, [f"{Path(r.path).name} total {r.total_doubt:.2f} {r.reason}" for r in ranking[:n]]


def run_seed(
    base: Path, pool, test, seed: int, minutes: float, n: int = 3, keep: Path | None = None
) -> dict:
    """Both rounds for one seed (see the module docstring); ``keep``: :func:`hitl.kept_model`."""
    first, val, _ = choose(pool, "random", seed, base, n=n, paired=True)
    rest = [p for p in pool if p not in first and p not in val]
    record: dict = {"seed": seed, "val_image": val[0].name}
    with tempfile.TemporaryDirectory() as tmp:
        m1, tuned = kept_model(
            keep, Path(tmp), f"rounds_seed{seed}_round1",
            lambda path: {
                **fine_tune(base, first, val, path, "fast", seed, minutes),
                "test": score(path, test, None),
            },
        )  # fmt: skip
        record["round1"] = {"images": [p.name for p in first], "objects": objects(first), **tuned}
        print(json.dumps({"seed": seed, "round1": record["round1"]["test"]}), flush=True)
        top, reasons = ranked_top(rest, m1, n)
        drawn = random.Random(3000 + seed).sample(rest, n)
        for how, second, why in (("top", top, reasons), ("random", drawn, None)):
            m2 = Path(tmp) / f"round2_{how}.safetensors"
            tuned = fine_tune(m1, first + second, val, m2, "fast", seed, minutes)
            kept = tuned["kept_base"]
            record[f"round2_{how}"] = {
                "images": [p.name for p in second],
                "objects": objects(second),
                "ranking_reasons": why,
                **tuned,
                "test": record["round1"]["test"] if kept else score(m2, test, None),
            }
            print(json.dumps({"seed": seed, how: record[f"round2_{how}"]["test"]}), flush=True)
    return record


def table(seeds: list[dict]) -> str:
    """Markdown: per seed and on average, the test DSB AP after each round.

    >>> row = {"seed": 0, "round1": {"objects": 9, "test": {"dsb_ap": 0.1}},
    ...        "round2_top": {"objects": 5, "test": {"dsb_ap": 0.3}},
    ...        "round2_random": {"objects": 7, "test": {"dsb_ap": 0.2}}}
    >>> table([row]).splitlines()[-1]
    '| mean | 0.100 | 0.300 | 0.200 | +0.100 |'
    """
    lines = [
        "| seed | round 1 (3 random) | round 2: + 3 top-ranked by M1 | round 2: + 3 random | "
        "top - random |",
        "|---|---|---|---|---|",
    ]
    keys = ("round1", "round2_top", "round2_random")
    for s in seeds:
        ap = [s[k]["test"]["dsb_ap"] for k in keys]
        cells = " | ".join(
            f"{a:.3f} ({s[k]['objects']} objects)" for a, k in zip(ap, keys, strict=True)
        )
        lines.append(f"| {s['seed']} | {cells} | {ap[1] - ap[2]:+.3f} |")
    means = [float(np.mean([s[k]["test"]["dsb_ap"] for s in seeds])) for k in keys]
    lines.append(
        f"| mean | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[1] - means[2]:+.3f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = loop_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    pool, test = domain_split(args.domain, args.n_test)
    out = args.out or ROOT / "bench" / "results" / f"hitl_rounds_{args.domain}.json"
    keep = args.keep / args.domain if args.keep else None

    def work(seed: int) -> dict:
        return run_seed(args.base, pool, test, seed, args.minutes, keep=keep)

    record_seeds(header(args, pool, test), out, args.seeds, work, table)


if __name__ == "__main__":
    main()
