"""What ``invert`` does for a model on images whose polarity it never saw.

A model trained on fluorescence (bright nuclei on a dark background) sees brightfield or
H&E nuclei (dark on a bright background) the wrong way round. ``PredictParams.invert``
(``--invert``, the Segment tab's *Invert* box) flips the normalised image (``1 - x``) before
the network, as Cellpose's ``invert`` does. This script scores a model on annotated images
with and without it, each image on its own:

- ``--domains``: the DSB 2018 ``stage1_train`` images of a kind (``brightfield``: the 11 grey
  brightfield ones, ``colour``: the 83 colour H&E / brightfield tiles), all of them, as
  ``bench/hitl.py`` splits them (pool and test together); for a base trained without them
  (``bench/hitl_base.py``), every one is unseen;
- ``--folder``: any folder with ``images/`` and ``masks/``.

For each set: the mean DSB AP, AP@0.5, F1@0.5 and pixel IoU without and with ``invert``, the
images on which inverting scored higher, and the seconds. JSON to
``bench/results/invert_<name>.json`` and a Markdown table:

    .venv/bin/python bench/invert.py --weights ~/.cache/napari-cellseg/base-fluo.safetensors \\
        --domains brightfield colour --diameter off --name base-fluo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json
from hitl import domain_split, scored_rows

from napari_cellseg.models import load_weights
from napari_cellseg.training.pairs import scan_training_folders

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("dsb_ap", "ap@0.5", "f1@0.5", "pixel_iou")


def summary(plain: list[dict], flipped: list[dict]) -> dict:
    """Means without and with invert, and on how many images inverting scored higher.

    >>> summary([{"dsb_ap": 0.1}, {"dsb_ap": 0.3}], [{"dsb_ap": 0.2}, {"dsb_ap": 0.3}])["dsb_ap"]
    {'plain': 0.2, 'inverted': 0.25, 'inverted_higher': 1, 'inverted_lower': 0}
    """
    out = {}
    for key in (k for k in METRICS if k in plain[0]):
        a = np.array([r[key] for r in plain])
        b = np.array([r[key] for r in flipped])
        out[key] = {
            "plain": round(float(a.mean()), 4),
            "inverted": round(float(b.mean()), 4),
            "inverted_higher": int((b > a).sum()),
            "inverted_lower": int((b < a).sum()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--domains", nargs="*", default=[], choices=("brightfield", "colour"))
    parser.add_argument("--folder", type=Path, nargs="*", default=[])
    parser.add_argument("--diameter", default="off")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    if not args.domains and not args.folder:
        parser.error("give --domains and/or --folder")
    loaded = load_weights(args.weights)
    sets = {d: [p for part in domain_split(d, None) for p in part] for d in args.domains}
    sets.update({f.name: scan_training_folders([f]) for f in args.folder})
    result = {
        "weights": args.weights.name,
        "diameter": args.diameter,
        "machine": machine(torch.device("cpu")),
        "sets": [],
    }
    lines = [
        "| images | n | DSB AP plain → inverted | F1@0.5 | pixel IoU | inverted higher (DSB AP) "
        "| seconds plain / inverted |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, pairs in sets.items():
        plain, t_plain = scored_rows(loaded, pairs, args.diameter, False)
        flipped, t_flipped = scored_rows(loaded, pairs, args.diameter, True)
        means = summary(plain, flipped)
        result["sets"].append(
            {
                "name": name,
                "images": len(pairs),
                "metrics": means,
                "per_image_dsb_ap": [
                    {"image": p.image_path.name, "plain": a["dsb_ap"], "inverted": b["dsb_ap"]}
                    for p, a, b in zip(pairs, plain, flipped, strict=True)
                ],
                "seconds": {"plain": round(t_plain, 1), "inverted": round(t_flipped, 1)},
            }
        )
        m = means
        lines.append(
            f"| {name} | {len(pairs)} | {m['dsb_ap']['plain']:.3f} → {m['dsb_ap']['inverted']:.3f} "
            f"| {m['f1@0.5']['plain']:.3f} → {m['f1@0.5']['inverted']:.3f} "
            f"| {m['pixel_iou']['plain']:.3f} → {m['pixel_iou']['inverted']:.3f} "
            f"| {m['dsb_ap']['inverted_higher']} of {len(pairs)} "
            f"| {t_plain:.0f} / {t_flipped:.0f} |"
        )
    name = args.name or args.weights.stem
    write_json(args.out, f"invert_{name}.json", result)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
