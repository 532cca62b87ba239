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
   is scored as M1. ``--arms`` chooses the round-2 runs as ``recipe:choice``: ``fast:top``
   and ``fast:random`` (the default), and the same with ``gentle`` (the fast recipe at
   :data:`GENTLE`'s values: a restart that does not shake a model already fine-tuned on
   these images). With ``--fresh-val`` round 2 validates on an image drawn anew from the
   remaining pool (left out of both choices) instead of round 1's, which chose M1's best
   epoch and so flatters M1.

The ranking is judged on the test images only, which nothing here chooses from. Writes
``bench/results/hitl_rounds_<domain>.json`` (``--out``) after each seed and prints a table::

    .venv/bin/python bench/hitl_rounds.py --base sample_data/models/unet_dsb.safetensors \\
        --domain glas --minutes 5 --seeds 0 1 2
    .venv/bin/python bench/hitl_rounds.py --base sample_data/models/unet_dsb.safetensors \
        --domain glas --minutes 5 --seeds 0 1 2 --arms fast:random gentle:random gentle:top \
        --keep ~/.cache/napari-cellseg/hitl --out bench/results/hitl_rounds_glas_gentle.json
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
    loop_parser,
    record_seeds,
    round_one,
    score,
)

from napari_cellseg.batch.ranking import rank_images
from napari_cellseg.io.images import read_labels
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent
#: The ``gentle`` arms' values, over the fast recipe's: a third of its learning rate and
#: M1's BatchNorm statistics kept (no AdaBN: M1 already has these images' statistics).
GENTLE = {"learning_rate": 3e-4, "adapt_batchnorm": False}
ARMS = ("fast:top", "fast:random")


def arm_key(arm: str) -> str:
    """The record's key of a round-2 arm (the fast recipe's keep their first names).

    >>> arm_key("fast:top"), arm_key("gentle:random")
    ('round2_top', 'round2_gentle_random')
    """
    recipe, how = arm.split(":")
    return f"round2_{how}" if recipe == "fast" else f"round2_{recipe}_{how}"


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
    base: Path, pool, test, seed: int, minutes: float, n: int = 3, keep: Path | None = None,
    arms: tuple[str, ...] = ARMS, fresh_val: bool = False,
) -> dict:  # fmt: skip
    """Both rounds for one seed (see the module docstring); ``keep``: :func:`hitl.kept_model`;
    ``fresh_val``: round 2 validates on a new image of the pool (:func:`fresh_validation`)."""
    first, val, _ = choose(pool, "random", seed, base, n=n, paired=True)
    rest = [p for p in pool if p not in first and p not in val]
    record: dict = {"seed": seed, "val_image": val[0].name}
    val2 = val
    if fresh_val:
        val2, rest = fresh_validation(rest, seed)
        record["val_image_round2"] = val2[0].name
    with tempfile.TemporaryDirectory() as tmp:
        m1, tuned = round_one(
            keep, Path(tmp), f"rounds_seed{seed}_round1", base, first, val, test, seed, minutes
        )
        record["round1"] = {"images": [p.name for p in first], "objects": objects(first), **tuned}
        print(json.dumps({"seed": seed, "round1": record["round1"]["test"]}), flush=True)
        top, reasons = ranked_top(rest, m1, n) if any("top" in a for a in arms) else ([], [])
        drawn = random.Random(3000 + seed).sample(rest, n)
        choices = {"top": (top, reasons), "random": (drawn, None)}
        for arm in arms:
            recipe, how = arm.split(":")
            second, why = choices[how]
            m2 = Path(tmp) / f"{arm_key(arm)}.safetensors"
            overrides = GENTLE if recipe == "gentle" else None
            tuned = fine_tune(m1, first + second, val2, m2, "fast", seed, minutes, None, overrides)
            kept = tuned["kept_base"]
            record[arm_key(arm)] = {
                "images": [p.name for p in second],
                "objects": objects(second),
                "ranking_reasons": why,
                **tuned,
                "test": record["round1"]["test"] if kept else score(m2, test, None),
            }
            print(json.dumps({"seed": seed, arm: record[arm_key(arm)]["test"]}), flush=True)
    return record


def fresh_validation(rest: list, seed: int) -> tuple[list, list]:
    """One image of ``rest`` drawn (from the seed alone) to validate round 2, and the rest.

    Round 1 chose M1's best epoch on its validation image, so M1's score there is the best of
    its epochs: a bar that flatters M1. A new image judges M1 and the second fine-tune alike.

    >>> fresh_validation(["a", "b", "c", "d"], 0)
    (['d'], ['a', 'b', 'c'])
    """
    val2 = random.Random(4000 + seed).sample(rest, 1)
    return val2, [p for p in rest if p not in val2]


def table(seeds: list[dict]) -> str:
    """Markdown: per seed and on average, the test DSB AP after each round (each round-2 arm
    recorded, with its fine-tunes that handed M1 back), and top - random where both ran.

    >>> row = {"seed": 0, "round1": {"objects": 9, "test": {"dsb_ap": 0.1}},
    ...        "round2_top": {"objects": 5, "test": {"dsb_ap": 0.3}},
    ...        "round2_random": {"objects": 7, "test": {"dsb_ap": 0.2}}}
    >>> table([row]).splitlines()[3]
    '| mean | 0.100 | 0.300 | 0.200 | +0.100 |'
    """
    keys = ["round1"] + [k for k in seeds[0] if k.startswith("round2_")]
    diff = "round2_top" in keys and "round2_random" in keys
    heads = [_column(k) for k in keys] + (["top - random"] if diff else [])
    lines = ["| seed | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for s in seeds:
        cells = [f"{s[k]['test']['dsb_ap']:.3f} ({s[k]['objects']} objects)" for k in keys]
        if diff:
            cells.append(
                f"{s['round2_top']['test']['dsb_ap'] - s['round2_random']['test']['dsb_ap']:+.3f}"
            )
        lines.append(f"| {s['seed']} | " + " | ".join(cells) + " |")
    means = {k: float(np.mean([s[k]["test"]["dsb_ap"] for s in seeds])) for k in keys}
    cells = [f"{means[k]:.3f}" for k in keys]
    if diff:
        cells.append(f"{means['round2_top'] - means['round2_random']:+.3f}")
    lines.append("| mean | " + " | ".join(cells) + " |")
    kept = [f"{_column(k)}: {sum(bool(s[k].get('kept_base')) for s in seeds)}/{len(seeds)}"
            for k in keys[1:]]  # fmt: skip
    return "\n".join(lines) + ("\n\nM1 handed back: " + "; ".join(kept) if kept else "")


def _column(key: str) -> str:
    """A column's title for a record key (:func:`arm_key`)."""
    if key == "round1":
        return "round 1 (3 random)"
    *recipe, how = key.removeprefix("round2_").split("_")
    chosen = "3 top-ranked by M1" if how == "top" else "3 random"
    return f"round 2{' ' + recipe[0] if recipe else ''}: + {chosen}"


def main() -> None:
    parser = loop_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--arms", nargs="+", default=list(ARMS),
        choices=[f"{r}:{h}" for r in ("fast", "gentle") for h in ("top", "random")],
        help="round-2 runs, recipe:choice (gentle: the fast recipe at GENTLE's values)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-val", action="store_true",
        help="round 2 validates on a new image of the pool, not on round 1's",
    )  # fmt: skip
    args = parser.parse_args()
    pool, test = domain_split(args.domain, args.n_test)
    out = args.out or ROOT / "bench" / "results" / f"hitl_rounds_{args.domain}.json"
    keep = args.keep / args.domain if args.keep else None

    def work(seed: int) -> dict:
        return run_seed(
            args.base, pool, test, seed, args.minutes, keep=keep, arms=args.arms,
            fresh_val=args.fresh_val,
        )  # fmt: skip

    record_seeds(header(args, pool, test), out, args.seeds, work, table)


if __name__ == "__main__":
    main()
