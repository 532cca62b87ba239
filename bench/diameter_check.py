"""The object diameter at inference: ``diameter="auto"`` against ``"off"`` on resized samples.

Each DSB sample of ``sample_data/`` (an image and its true labels) is resized by every
``--factors`` value (bilinear; the truth by nearest neighbour), so that its nuclei have
another size, and segmented with the bundled demo U-Net twice: ``diameter="auto"`` (the
size estimated from the image) and ``"off"`` (no rescaling). For each: the true median
equivalent diameter, the estimate and the scale used, object counts and DSB AP against
the resized truth. Writes ``bench/results/diameter_check.json`` (or ``--out``). Usage:

    .venv/bin/python bench/diameter_check.py
    .venv/bin/python bench/diameter_check.py --factors 0.5 1 2 4 --samples dsb_fluorescence
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skimage.transform import rescale

from napari_cellseg.inference import predict
from napari_cellseg.inference.object_size import median_diameter, to_image_grid
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.labels.metrics import dsb_ap
from napari_cellseg.models import load_weights
from napari_cellseg.params import PredictParams

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--samples", nargs="+", default=["dsb_fluorescence", "dsb_he"])
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "sample_data/models/unet_dsb.safetensors"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/diameter_check.json")
    args = parser.parse_args()
    model = load_weights(args.weights, device="cpu")
    rows = []
    for name in args.samples:
        image = read_image(ROOT / f"sample_data/images/{name}.png")
        truth = read_labels(ROOT / f"sample_data/masks/{name}.tif")
        for factor in args.factors:
            scale = (factor, factor) + (1,) * (image.data.ndim - 2)
            data = rescale(
                image.data, scale, order=1, preserve_range=True, anti_aliasing=factor < 1
            )
            data = data.astype(image.data.dtype)
            gt, _, _ = to_image_grid(truth, object_table(truth), data.shape[:2])
            row = {"sample": name, "factor": factor, "truth_diameter": median_diameter(gt)}
            row["truth_objects"] = int(gt.max())
            for mode in ("auto", "off"):
                p = predict(
                    data, model, PredictParams(device="cpu", axes=image.axes, diameter=mode)
                )
                row[mode] = {
                    "diameter": p.diameter,
                    "scale": p.scale,
                    "objects": p.n_objects,
                    "dsb_ap": round(float(dsb_ap(gt, p.labels)), 4),
                }
            rows.append(row)
            a, o = row["auto"], row["off"]
            est = "-" if a["diameter"] is None else f"{a['diameter']:.0f} px"
            print(
                f"| {name} ×{factor:g} | {row['truth_diameter']:.0f} px, {row['truth_objects']} "
                f"| {est} ×{a['scale']:.2f}, {a['objects']}, AP {a['dsb_ap']:.3f} "
                f"| {o['objects']}, AP {o['dsb_ap']:.3f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"weights": args.weights.name, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
