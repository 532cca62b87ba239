"""Object size: DSB AP across magnifications with diameter=auto, the true diameter, or off.

On the DSB 2018 validation split (the seeded 15 % that `cellseg train` holds out; no model
or threshold here was chosen on it) each image and its ground truth are rescaled by ×0.5,
×1, ×2, ×3 and ×4 (the magnifications users have: image bilinear, labels nearest) and
segmented three ways:

- ``auto``: the diameter estimated from the image (the default for our models);
- ``true``: the median equivalent diameter of the rescaled ground truth's objects;
- ``off``: no rescaling (the behaviour before object sizes).

It records DSB AP, AP@0.5 and F1@0.5 on the rescaled grid, the auto estimate's error per
image and the time per image, writes JSON to bench/results/ and prints Markdown tables. The
``--native`` part scores whole models (e.g. the old and new demo) at their own scale on the
whole split, with and without TTA. Examples:

    .venv/bin/python bench/object_size.py --weights sample_data/models/unet_dsb.safetensors \\
        --limit 20 --scales 0.5 1 2 3 4
    .venv/bin/python bench/object_size.py --native --weights old.safetensors new.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from napari_cellseg.inference import predict
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import evaluate_pair
from napari_cellseg.models import load_weights
from napari_cellseg.params import BACKENDS, PredictParams
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.scale import measure_diameter
from napari_cellseg.training.split import split_pairs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def rescaled(image: np.ndarray, labels: np.ndarray, factor: float):
    """The image (bilinear, anti-aliased when shrinking) and labels (nearest) ×``factor``."""
    from skimage.transform import resize

    if factor == 1:
        return image, labels
    h, w = labels.shape
    shape = (max(8, round(h * factor)), max(8, round(w * factor)))
    img = resize(
        image,
        shape + image.shape[2:],
        order=1,
        preserve_range=True,
        anti_aliasing=factor < 1,
    ).astype(image.dtype)
    lab = resize(labels, shape, order=0, preserve_range=True, anti_aliasing=False)
    return img, lab.astype(labels.dtype)


def validation_pairs(data: Path, limit: int | None, split: str = "validation") -> list:
    """The seeded validation split's pairs (or, ``split="train"``, the training split's:
    for choosing settings without looking at the held-out images), ``limit`` of them spread
    over the split in name order."""
    train, val = split_pairs(scan_training_folders([data]), 0.15, seed=0)
    pairs = train if split == "train" else val
    if limit:
        step = max(1, len(pairs) // limit)
        pairs = pairs[::step][:limit]  # spread over the split, in name order
    return pairs


def apply_settings(settings: list[str]) -> dict[str, float]:
    """Set the size estimate's module constants from ``NAME=VALUE`` (numbers; ``True``/
    ``False``), in :mod:`napari_cellseg.inference.diameter` or, for the quick passes' own
    (``ESTIMATE_SIDE``, ...), :mod:`napari_cellseg.inference.quick_passes`, to compare the
    size estimate's settings; returns them."""
    from napari_cellseg.inference import diameter, quick_passes

    done = {}
    for item in settings:
        name, _, text = item.partition("=")
        module = next((m for m in (diameter, quick_passes) if hasattr(m, name)), None)
        if module is None or not name.isupper():
            raise SystemExit(
                f"--setting {item}: no constant {name!r} in inference/diameter.py "
                "or inference/quick_passes.py"
            )
        value = {"True": True, "False": False}.get(text)
        value = value if value is not None else type(getattr(module, name))(float(text))
        setattr(module, name, value)
        done[name] = value
    return done


def score(loaded, image, truth, diameter, tta: int, device: str, backend: str = "auto") -> dict:
    params = PredictParams(device=device, diameter=diameter, tta=tta, backend=backend)
    start = time.perf_counter()
    prediction = predict(image, loaded, params)
    seconds = time.perf_counter() - start
    metrics = evaluate_pair(truth, prediction.labels)
    return {
        "dsb_ap": metrics["dsb_ap"],
        "ap@0.5": metrics["ap@0.5"],
        "f1@0.5": metrics["f1@0.5"],
        "seconds": seconds,
        "diameter_used": getattr(prediction, "diameter", None),
        "scale": getattr(prediction, "scale", None),
        "objects": int(prediction.labels.max()),
    }


def run_scales(args, loaded, pairs) -> list[dict]:
    rows = []
    for pair in pairs:
        image = read_image(pair.image_path).data
        truth0 = read_labels(pair.mask_path)
        for factor in args.scales:
            img, truth = rescaled(image, truth0, factor)
            true_d = measure_diameter(truth)
            for mode in args.modes:
                diameter = {"auto": "auto", "off": "off"}.get(mode)
                if mode == "true":
                    diameter = float(np.clip(true_d, 2, 500)) if true_d else "off"
                row = score(loaded, img, truth, diameter, 1, args.device, args.backend)
                row.update(image=pair.name, factor=factor, mode=mode, true_diameter=true_d)
                if mode == "auto" and row["diameter_used"] and true_d:
                    row["auto_error"] = float(row["diameter_used"]) / true_d - 1.0
                rows.append(row)
                print(
                    f"{pair.name[:12]} ×{factor:g} {mode:4s} DSB AP {row['dsb_ap']:.3f} "
                    f"diameter {row['diameter_used']} (true {true_d:.1f}) {row['seconds']:.1f} s",
                    flush=True,
                )
    return rows


def summary_scales(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["factor"], r["mode"]) for r in rows})
    for factor, mode in keys:
        sel = [r for r in rows if r["factor"] == factor and r["mode"] == mode]
        errors = [abs(r["auto_error"]) for r in sel if "auto_error" in r]
        out.append(
            {
                "factor": factor,
                "mode": mode,
                "images": len(sel),
                "dsb_ap": float(np.mean([r["dsb_ap"] for r in sel])),
                "f1@0.5": float(np.mean([r["f1@0.5"] for r in sel])),
                "seconds_per_image": float(np.mean([r["seconds"] for r in sel])),
                "auto_abs_error_median": float(np.median(errors)) if errors else None,
            }
        )
    return out


def run_native(args, weights: list[Path], pairs) -> list[dict]:
    """Each model on the unscaled split: its default diameter (``None``) and/or the truth's."""
    rows = []
    data = [(read_image(p.image_path).data, read_labels(p.mask_path)) for p in pairs]
    for path in weights:
        loaded = load_weights(path)
        for tta in args.tta:
            for how in args.native_diameters:
                per = []
                for image, truth in data:
                    diameter = None
                    if how == "true":
                        true_d = measure_diameter(truth)
                        diameter = float(np.clip(true_d, 2, 500)) if true_d else "off"
                    per.append(
                        score(loaded, image, truth, diameter, tta, args.device, args.backend)
                    )
                rows.append(_native_row(path, loaded, tta, how, per))
                rows[-1]["per_image"] = [
                    {"image": pair.name, "dsb_ap": row["dsb_ap"]}
                    for pair, row in zip(pairs, per, strict=True)
                ]
                r = rows[-1]
                print(
                    f"{path.name} tta {tta} diameter {how}: DSB AP {r['dsb_ap']:.3f} "
                    f"AP@0.5 {r['ap@0.5']:.3f} F1@0.5 {r['f1@0.5']:.3f} "
                    f"{r['seconds']:.2f} s/image",
                    flush=True,
                )
    return rows


def _native_row(path: Path, loaded, tta: int, how: str, per: list[dict]) -> dict:
    return {
        "weights": path.name,
        "model": loaded.card.name,
        "object_diameter": loaded.card.object_diameter,
        "tta": tta,
        "diameter": how,
        "images": len(per),
        **{
            k: float(np.mean([p[k] for p in per]))
            for k in ("dsb_ap", "ap@0.5", "f1@0.5", "seconds")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="images of the split to use")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1, 2, 3, 4])
    parser.add_argument("--modes", nargs="+", default=["auto", "true", "off"])
    parser.add_argument("--native", action="store_true", help="whole models at native scale")
    parser.add_argument("--tta", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--native-diameters", nargs="+", default=["default"], choices=["default", "true"],
        help="--native: the model's default diameter (auto for models with an object "
        "diameter, else none) and/or the true one",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--split", choices=["validation", "train"], default="validation",
        help="train: images of the training split, to choose settings on",
    )  # fmt: skip
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a constant of inference/diameter.py or quick_passes.py for this run (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="PredictParams.backend (default auto)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--name", default=None,
        help="JSON file name (default object_size.json, or object_size_native.json with --native)",
    )  # fmt: skip
    args = parser.parse_args()
    settings = apply_settings(args.setting)
    pairs = validation_pairs(args.data, args.limit, args.split)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "backend": args.backend,
        "images": [p.name for p in pairs],
        "split": f"dsb2018 stage1_train, seeded 15 % split (seed 0): {args.split}",
        "settings": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.native:
        rows = run_native(args, args.weights, pairs)
        out = args.out / (args.name or "object_size_native.json")
        out.write_text(json.dumps({**meta, "results": rows}, indent=1))
        print("\n| model | object diameter | TTA | diameter | DSB AP | AP@0.5 | F1@0.5 | s/image |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['weights']} | {r['object_diameter']} | ×{r['tta']} | {r['diameter']} | "
                f"{r['dsb_ap']:.3f} | "
                f"{r['ap@0.5']:.3f} | {r['f1@0.5']:.3f} | {r['seconds']:.2f} |"
            )
        return 0
    results = {}
    for path in args.weights:
        loaded = load_weights(path)
        rows = run_scales(args, loaded, pairs)
        results[path.name] = {"rows": rows, "summary": summary_scales(rows)}
    out = args.out / (args.name or "object_size.json")
    out.write_text(json.dumps({**meta, "results": results}, indent=1))
    for name, res in results.items():
        print(f"\n{name}\n\n| scale | mode | DSB AP | F1@0.5 | s/image | auto error (median) |")
        print("|---|---|---|---|---|---|")
        for s in res["summary"]:
            err = s["auto_abs_error_median"]
            print(
                f"| ×{s['factor']:g} | {s['mode']} | {s['dsb_ap']:.3f} | {s['f1@0.5']:.3f} | "
                f"{s['seconds_per_image']:.2f} | {'' if err is None else f'{err:.0%}'} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
