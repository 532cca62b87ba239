"""Which GlaS images each human-in-the-loop selection corrected: their grades and glands.

``bench/hitl.py`` on GlaS compares 3 random ``train`` images with 3 chosen by the ranking
(paired: the same validation image per seed). This script reads the recorded runs
(``bench/results/hitl_glas*.json``, recipe ``fast``, the base not kept) and the data's
``Grade.csv`` (benign or malignant, per image) and writes, per distinct selection, the
grades of its 3 images, the glands they hold and the test DSB AP; then the mean DSB AP by
the number of benign images among the 3. No model runs::

    .venv/bin/python bench/hitl_grades.py [--out bench/results/hitl_glas_grades.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADES = ROOT.parent / "shared" / "data" / "glas" / "Grade.csv"


def read_grades(path: Path) -> dict[str, str]:
    """``{image name: "benign" | "malignant"}`` from GlaS's ``Grade.csv``."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return {row[0].strip(): row[2].strip() for row in rows[1:] if len(row) > 2}


def selections(runs: Sequence[Mapping], grades: Mapping[str, str], source: str = "") -> list[dict]:
    """One row per run: selection, seed, its images' grades, glands and test DSB AP.

    Runs of another recipe than ``fast``, with their own object diameter, or that kept the
    base model are left out (their score is not the selection's).

    >>> run = {"recipe": "fast", "selection": "random", "seed": 0, "kept_base": False,
    ...        "train_images": ["a", "b", "c"], "val_image": "d", "corrected_objects": 9,
    ...        "test": {"dsb_ap": 0.1}}
    >>> row = selections([run], {"a": "benign", "b": "malignant", "c": "benign"})[0]
    >>> row["grades"], row["benign"]
    ('b m b', 2)
    """
    rows = []
    for run in runs:
        if run.get("recipe") != "fast" or run.get("kept_base") or run.get("object_diameter"):
            continue
        names = list(run["train_images"])
        marks = [grades.get(name, "?")[:1] for name in names]
        rows.append(
            {
                "source": source,
                "selection": run["selection"],
                "seed": run["seed"],
                "images": names,
                "grades": " ".join(marks),
                "benign": marks.count("b"),
                "val_image": run["val_image"],
                "val_grade": grades.get(run["val_image"], "?"),
                "glands": int(run["corrected_objects"]),
                "test_dsb_ap": float(run["test"]["dsb_ap"]),
            }
        )
    return rows


def by_benign(rows: Sequence[Mapping]) -> dict[int, dict]:
    """Mean test DSB AP and glands by the number of benign images among the 3.

    >>> by_benign([{"benign": 2, "test_dsb_ap": 0.2, "glands": 30},
    ...            {"benign": 2, "test_dsb_ap": 0.1, "glands": 20}])
    {2: {'runs': 2, 'mean_dsb_ap': 0.15, 'mean_glands': 25.0}}
    """
    out: dict[int, dict] = {}
    for count in sorted({int(r["benign"]) for r in rows}):
        group = [r for r in rows if int(r["benign"]) == count]
        out[count] = {
            "runs": len(group),
            "mean_dsb_ap": round(sum(r["test_dsb_ap"] for r in group) / len(group), 4),
            "mean_glands": round(sum(r["glands"] for r in group) / len(group), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--grades", type=Path, default=GRADES)
    parser.add_argument("--files", nargs="*", default=None, help="hitl JSON names to read")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    grades = read_grades(args.grades)
    names = args.files or sorted(p.name for p in args.results.glob("hitl_glas*.json"))
    rows = []
    for name in names:
        result = json.loads((args.results / name).read_text())
        rows += selections(result["runs"], grades, source=name)
    summary = by_benign(rows)
    print("| runs | selection | seed | grades of the 3 (b/m) | glands | validation image | "
          "test DSB AP |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['selection']} | {r['seed']} | {r['grades']} | {r['glands']} "
              f"| {r['val_image']} ({r['val_grade']}) | {r['test_dsb_ap']:.3f} |")  # fmt: skip
    print()
    print("| benign images of the 3 | runs | mean glands | mean test DSB AP |")
    print("|---|---|---|---|")
    for count, s in summary.items():
        print(f"| {count} | {s['runs']} | {s['mean_glands']} | {s['mean_dsb_ap']:.3f} |")
    if args.out:
        args.out.write_text(
            json.dumps({"files": names, "rows": rows, "by_benign": summary}, indent=1)
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
