"""Post-processing alone, old (``_baseline.py``) vs new, in CPU seconds, on real network output.

Runs the demo U-Net once on each image (the sample brightfield image and mosaics of DSB
images, 1024² and 2048² by default: ``--mosaics``) and the demo Mask R-CNN on the sample
fluorescence image, then times turning the kept output into labels and the object table, old
and new interleaved, in process CPU time (``time.process_time``: robust to a busy machine),
and checks the labels are the same (or, where the watershed broke an exact tie in another
order, how many pixels agree).
Writes bench/results/postprocess_speed_cpu.json (``--out-name``).

    nice -n 19 .venv/bin/python bench/postprocess_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _baseline as old
import numpy as np

from inference import DEFAULT_DATA, ROOT, mosaic
from napari_cellseg.inference import postprocess as new
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.planes import predict_planes
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models.weights import load_weights
from napari_cellseg.params import PredictParams


def _labels(module, card, output, shape, post):
    table = object_table if module is new else module.object_table
    if card.family == "unet":
        labels = module.unet_instances(output, card.outputs, post)
        return labels, table(labels)
    labels, kept = module.maskrcnn_instances(output, shape, post)
    return labels, table(labels, scores=kept.scores, classes=kept.classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out-name", default="postprocess_speed_cpu.json")
    parser.add_argument(
        "--mosaics", nargs="*", type=int, default=[1024, 2048], help="DSB mosaic sides (px)"
    )
    args = parser.parse_args()
    models = ROOT / "sample_data" / "models"
    unet = load_weights(models / "unet_dsb.safetensors")
    mrcnn = load_weights(models / "maskrcnn_dsb.safetensors")

    def sample(name: str) -> np.ndarray:
        return np.asarray(read_image(get_sample(name).image_path).data)[..., :3]

    runs = [
        (unet, "sample dsb_brightfield 512²", sample("dsb_brightfield")),
        *((unet, f"dsb mosaic {n}²", mosaic(n, "dsb", args.data_root)) for n in args.mosaics),
        (mrcnn, "sample dsb_fluorescence 256²", sample("dsb_fluorescence")),
    ]
    rows = []
    for loaded, name, image in runs:
        prediction = predict_planes(image, loaded, PredictParams(device="cpu"))
        output, post, shape = prediction.raw[0], prediction.params.post, image.shape[:2]
        seconds: dict[str, list[float]] = {"old": [], "new": []}
        results = {}
        for _ in range(args.repeats):
            for which, module in (("new", new), ("old", old)):
                start = time.process_time()
                results[which] = _labels(module, loaded.card, output, shape, post)
                seconds[which].append(time.process_time() - start)
        (a, ta), (b, tb) = results["old"], results["new"]
        same = bool(np.array_equal(a, b)) and all(np.array_equal(ta[k], tb[k]) for k in ta)
        row = {
            "family": loaded.card.family,
            "image": name,
            "megapixels": image.shape[0] * image.shape[1] / 1e6,
            "objects": int(b.max()),
            "cpu_seconds_old": seconds["old"],
            "cpu_seconds_new": seconds["new"],
            "speedup_median": float(np.median(seconds["old"]) / np.median(seconds["new"])),
            "identical": same,
            "pixels_equal": float(np.mean(a == b)),
            "objects_old": int(a.max()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / args.out_name
    path.write_text(json.dumps({"results": rows}, indent=2))
    print(f"wrote {path}")
    print(
        "| family | image | objects old / new | CPU ms old | CPU ms new | speed-up "
        "| identical (pixels equal) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['family']} | {r['image']} | {r['objects_old']} / {r['objects']} | "
            f"{1e3 * np.median(r['cpu_seconds_old']):.0f} | "
            f"{1e3 * np.median(r['cpu_seconds_new']):.0f} | {r['speedup_median']:.2f} | "
            f"{'yes' if r['identical'] else 'no'} ({r['pixels_equal']:.4%}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
