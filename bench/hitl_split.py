"""The loop's second fine-tune, validated as the dock splits: a fresh split against a stable one.

As a user of the dock does (validation share 0.15, the training's own split): round 1 fine-tunes
the base on a folder of 4 left-out images into M1 (3 train, 1 validation); round 2 adds 3 more
images and fine-tunes M1 on the 7, twice:

- ``fresh``: the split before session 25, ``split_pairs`` of the 7 images, which can put into
  validation an image M1 was trained on (run here with that split given explicitly);
- ``stable``: today's ``cellseg train`` / dock split (``training.stable_split``), which keeps
  M1's roles: its training images train, its validation image validates.

Only seeds whose fresh split validates on one of M1's training images are run (the case the
change is for), the first ``--seeds`` of them in seed order; which seeds those are follows
from the images drawn and the split (seeded by the run's seed) alone, before any
training. Each round-2 model (or M1, when the never-worse rule hands it back) is scored on
the test images. Writes
``bench/results/hitl_split_<domain>.json`` and prints a table::

    .venv/bin/python bench/hitl_split.py --base sample_data/models/unet_dsb.safetensors \\
        --domain glas --minutes 5 --seeds 3
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from hitl import domain_split, fine_tune, header, loop_parser, record_seeds, round_one, score

from napari_cellseg.params import TrainParams
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
FRACTION = TrainParams().val_fraction


def images_of(pool, seed: int) -> tuple[list, list]:
    """The 4 round-1 images and the 3 added in round 2, drawn with ``seed``."""
    drawn = random.Random(4000 + seed).sample(pool, 7)
    return drawn[:4], drawn[4:]


def leaks(first, added, seed: int) -> bool:
    """Whether the fresh split of round 2 validates on an image M1 was trained on (the
    training splits with the run's seed, ``TrainParams.seed``)."""
    trained, _ = split_pairs(first, FRACTION, seed)
    _, fresh_val = split_pairs(first + added, FRACTION, seed)
    return any(p in trained for p in fresh_val)


def run_seed(base: Path, pool, test, seed: int, minutes: float, keep: Path | None = None) -> dict:
    """Round 1, then round 2 with the fresh and with the stable split (module docstring);
    ``keep``: :func:`hitl.kept_model`."""
    first, added = images_of(pool, seed)
    m1_train, m1_val = split_pairs(first, FRACTION, seed)
    fresh_train, fresh_val = split_pairs(first + added, FRACTION, seed)
    record: dict = {"seed": seed, "m1_train": [p.name for p in m1_train]}
    record["m1_val"] = [p.name for p in m1_val]
    with tempfile.TemporaryDirectory() as tmp:
        m1, record["round1"] = round_one(
            keep, Path(tmp), f"split_seed{seed}_round1", base, first, None, test, seed, minutes
        )
        print(json.dumps({"seed": seed, "round1": record["round1"]["test"]}), flush=True)
        for how, val in (("fresh", fresh_val), ("stable", None)):
            train = fresh_train if how == "fresh" else first + added
            m2 = Path(tmp) / f"m2_{how}.safetensors"
            tuned = fine_tune(m1, train, val, m2, "fast", seed, minutes)
            record[how] = {
                "val": [p.name for p in fresh_val] if how == "fresh" else None,
                **tuned,
                "test": record["round1"]["test"] if tuned["kept_base"] else score(m2, test, None),
            }
            print(json.dumps({"seed": seed, how: record[how]["test"]}), flush=True)
    return record


def table(seeds: list[dict]) -> str:
    """Markdown: per seed, the validation images, whether M1 came back, the test DSB AP.

    >>> row = {"seed": 2, "m1_val": ["v"], "round1": {"test": {"dsb_ap": 0.1}},
    ...        "fresh": {"val": ["t"], "kept_base": True, "test": {"dsb_ap": 0.1}},
    ...        "stable": {"val": None, "kept_base": False, "test": {"dsb_ap": 0.2}}}
    >>> table([row]).splitlines()[-1]
    '| 2 | 0.100 | t (M1 trained on it) | M1 back | 0.100 | v | new model | 0.200 |'
    """
    lines = [
        "| seed | M1 test DSB AP | fresh split validates on | fresh: result | fresh test DSB AP "
        "| stable split validates on | stable: result | stable test DSB AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in seeds:
        cells = [f"{s['round1']['test']['dsb_ap']:.3f}"]
        for how in ("fresh", "stable"):
            val = s[how]["val"] or s["m1_val"]
            named = ", ".join(val) + (" (M1 trained on it)" if how == "fresh" else "")
            result = "M1 back" if s[how]["kept_base"] else "new model"
            cells += [named, result, f"{s[how]['test']['dsb_ap']:.3f}"]
        lines.append(f"| {s['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = loop_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="how many leaking seeds to run")
    args = parser.parse_args()
    pool, test = domain_split(args.domain, args.n_test)
    out = args.out or ROOT / "bench" / "results" / f"hitl_split_{args.domain}.json"
    leaking = [s for s in range(100) if leaks(*images_of(pool, s), s)]
    result = {**header(args, pool, test), "leaking_of_first_20": sum(s < 20 for s in leaking)}
    keep = args.keep / args.domain if args.keep else None

    def work(seed: int) -> dict:
        return run_seed(args.base, pool, test, seed, args.minutes, keep)

    record_seeds(result, out, leaking[: args.seeds], work, table)


if __name__ == "__main__":
    main()
