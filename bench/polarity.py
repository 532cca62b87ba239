"""How well the Invert hint reads images, and what following it is worth.

A prediction warns when an image is the other way round (dark objects on a bright
background, or bright on dark) from nearly all the model's training images
(``napari_cellseg.models.polarity``). Two parts, JSON to
``bench/results/polarity_<name>.json`` and Markdown tables:

1. **Reading** (no model): every annotated image of the sets, read by ``polarity`` as a
   percentile-normalised RGB network input, against the truth from its mask (the median
   inside the objects above or below the median outside them). The sets: the DSB 2018
   ``stage1_train`` images by kind (fluorescence, brightfield, colour, as ``bench/hitl.py``
   splits them), and GlaS ``train`` + ``testA`` and ISBI 2012 ``train`` where present
   (``--no-shared`` leaves them out), plus any ``--folder``.
2. **Hint** (each ``--weights``): what the model learned, from its card; a card written before
   training recorded it gets it as training records it now: each training image of its data
   manifest (found by file name in the sets), loaded as training loads it (``load_pair``:
   the card's channels, normalisation and invert) and read by ``polarity``. Then, for every
   image of the sets that is not in the manifest: does the hint fire? With
   ``--invert-json`` (``bench/invert.py``'s per-image DSB AP for the same weights, one or
   more files), the mean DSB AP of following the hint (inverted where it fired) against
   never and always inverting, on the images those files scored.

``--save-learned DIR`` writes a copy of each weight file whose card had no polarity, with
the polarity read as above in its card (the same weights), as a model trained today would
carry it: ``docs/screenshots_invert.py`` shows the hint with it.

    .venv/bin/python bench/polarity.py --name s32 \\
        --weights ~/.cache/napari-cellseg/base-fluo.safetensors \\
                  src/napari_cellseg/_sample_data/models/unet_dsb.safetensors \\
        --invert-json base-fluo.safetensors=bench/results/invert_base-fluo.json \\
                      base-fluo.safetensors=bench/results/invert_base-fluo_glas-isbi.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json
from hitl import DATA, image_kind

from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.models import load_weights, read_card, save_weights
from napari_cellseg.models.normalise import to_model_input
from napari_cellseg.models.polarity import image_hint, polarity
from napari_cellseg.training.pairs import TrainingPair, load_pair, scan_training_folders

ROOT = Path(__file__).resolve().parent.parent
READ_AS = {"method": "percentile", "low": 1.0, "high": 99.8}
SHARED = (("GlaS", "glas", ("train", "testA")), ("ISBI 2012 EM", "isbi2012_em", ("train",)))


def annotated_sets(folders: list[Path], shared: bool) -> dict[str, list[TrainingPair]]:
    """The image sets by name: DSB by kind, GlaS, ISBI (``shared``), then ``folders``."""
    sets: dict[str, list[TrainingPair]] = {}
    dsb = DATA / "dsb2018" / "stage1_train"
    if shared and dsb.is_dir():
        for pair in scan_training_folders([dsb]):
            sets.setdefault(f"DSB {image_kind(pair.image_path)}", []).append(pair)
        for name, folder, parts in SHARED:
            found = [DATA / folder / part for part in parts]
            if all(f.is_dir() for f in found):
                sets[name] = scan_training_folders(found)
    sets.update({f.name: scan_training_folders([f]) for f in folders})
    return dict(sorted(sets.items()))


def read_as_input(plane: np.ndarray) -> np.ndarray:
    """``plane`` as a percentile-normalised 3-channel network input (``READ_AS``)."""
    return np.asarray(
        to_model_input(plane, input_channels=3, channel_handling="rgb", normalisation=READ_AS)
    )


def truth(x: np.ndarray, mask: np.ndarray) -> bool | None:
    """Whether the objects are brighter than the background: the medians, inside and outside
    ``mask``, of the input ``x`` (``(C, Y, X)``) averaged over its channels.

    >>> img = np.zeros((8, 8), np.uint8); img[2:4, 2:4] = 200
    >>> m = np.zeros((8, 8), np.int32); m[2:4, 2:4] = 1
    >>> truth(read_as_input(img), m), truth(read_as_input(255 - img), m)
    (True, False)
    """
    grey = x.mean(axis=0)
    inside = mask > 0
    if inside.all() or not inside.any():
        return None
    return bool(np.median(grey[inside]) > np.median(grey[~inside]))


def reading(sets: dict[str, list[TrainingPair]]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Part 1, and every image's plane by file path (for part 2)."""
    rows, planes = [], {}
    for name, pairs in sets.items():
        counts = {"bright": 0, "dark": 0, "unclear": 0}
        truly_bright = agree = 0
        fractions = []
        for pair in pairs:
            plane = np.asarray(read_image(pair.image_path).data)
            planes[str(pair.image_path)] = plane
            x = read_as_input(plane)  # normalised once, for the reading and the truth
            read = polarity(x)
            mask = np.asarray(read_labels(pair.mask_path).data)
            bright = truth(x, mask)
            fractions.append(float((mask > 0).mean()))
            counts[read] += 1
            truly_bright += bool(bright)
            agree += read == ("bright" if bright else "dark")
        rows.append(
            {"set": name, "images": len(pairs), "objects_brighter": truly_bright,
             "read": counts, "agree": agree,
             "object_pixels_median": round(float(np.median(fractions)), 3)}
        )  # fmt: skip
    return rows, planes


def with_learned(card, pairs_by_name: dict[str, TrainingPair]):
    """The card, with each manifest training image's polarity read as training records it,
    when the card has none; and how it was got."""
    if card.learned_polarity() is not None:
        return card, "card"
    manifest = []
    for entry in card.provenance.get("data_manifest") or []:
        pair = pairs_by_name.get(entry.get("image", ""))
        if pair is not None and entry.get("role", "train") == "train":
            entry = {**entry, "polarity": polarity(load_pair(pair, card)[0])}
        manifest.append(entry)
    provenance = {**card.provenance, "data_manifest": manifest}
    return replace(card, provenance=provenance), "manifest re-read"


def hints(weights: Path, sets, planes, invert_jsons: list[Path], save_to: Path | None) -> dict:
    """Part 2 for one weight file."""
    card = read_card(weights)
    by_name = {p.image_path.name: p for pairs in sets.values() for p in pairs}
    card, source = with_learned(card, by_name)
    trained = {e.get("image") for e in card.provenance.get("data_manifest") or []}
    follow = {}
    for path in invert_jsons:
        scored = json.loads(path.read_text())
        follow.update({r["image"]: r for s in scored["sets"] for r in s["per_image_dsb_ap"]})
    out = {
        "weights": weights.name,
        "learned": card.learned_polarity(),
        "source": source,
        "sets": [],
    }
    if save_to is not None and source != "card":
        model = load_weights(weights).model
        save_weights(model, card, save_to / weights.name)
        out["saved"] = str(save_to / weights.name)
    for name, pairs in sets.items():
        unseen = [p for p in pairs if p.image_path.name not in trained]
        fired = {p.image_path.name for p in unseen if image_hint(planes[str(p.image_path)], card)}
        row = {"set": name, "unseen": len(unseen), "hint": len(fired)}
        rows = [follow[p.image_path.name] for p in unseen if p.image_path.name in follow]
        if rows:
            followed = [r["inverted" if r["image"] in fired else "plain"] for r in rows]
            row["dsb_ap"] = {
                "images": len(rows),
                "never": round(float(np.mean([r["plain"] for r in rows])), 4),
                "following": round(float(np.mean(followed)), 4),
                "always": round(float(np.mean([r["inverted"] for r in rows])), 4),
            }
        out["sets"].append(row)
    return out


def tables(read_rows: list[dict], models: list[dict]) -> str:
    lines = [
        "| images | n | objects brighter (masks) | object pixels (median) "
        "| read bright / dark / unclear | agree |",
        "|---|---|---|---|---|---|",
    ]
    for r in read_rows:
        c = r["read"]
        lines.append(
            f"| {r['set']} | {r['images']} | {r['objects_brighter']} "
            f"| {r['object_pixels_median']:.0%} "
            f"| {c['bright']} / {c['dark']} / {c['unclear']} | {r['agree']} |"
        )
    lines += [
        "",
        "| model | learned bright / dark / unclear | images | unseen | hint fired "
        "| DSB AP never / following the hint / always inverted |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        learned = m["learned"] or {}
        way = " / ".join(str(learned.get(k, "–")) for k in ("bright", "dark", "unclear"))
        for s in m["sets"]:
            ap = s.get("dsb_ap")
            shown = (
                f"{ap['never']:.3f} / {ap['following']:.3f} / {ap['always']:.3f} ({ap['images']})"
                if ap
                else "–"
            )
            lines.append(
                f"| {m['weights']} | {way} | {s['set']} | {s['unseen']} | {s['hint']} | {shown} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, nargs="*", default=[])
    parser.add_argument("--folder", type=Path, nargs="*", default=[])
    parser.add_argument("--no-shared", action="store_true", help="only the --folder sets")
    parser.add_argument(
        "--invert-json", nargs="*", default=[], metavar="WEIGHTS_NAME=JSON",
        help="bench/invert.py results by weight file name (one name may come more than once)",
    )  # fmt: skip
    parser.add_argument("--save-learned", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="run")
    args = parser.parse_args()
    sets = annotated_sets(args.folder, not args.no_shared)
    if not sets:
        parser.error("no image sets: give --folder, or put the shared data beside the project")
    scored: dict[str, list[Path]] = {}
    for item in args.invert_json:
        name, path = item.split("=", 1)
        scored.setdefault(name, []).append(Path(path))
    read_rows, planes = reading(sets)
    if args.save_learned is not None:
        args.save_learned.mkdir(parents=True, exist_ok=True)
    models = [
        hints(w, sets, planes, scored.get(w.name, []), args.save_learned) for w in args.weights
    ]
    result = {"machine": machine(torch.device("cpu")), "reading": read_rows, "models": models}
    write_json(args.out, f"polarity_{args.name}.json", result)
    print(tables(read_rows, models))


if __name__ == "__main__":
    main()
