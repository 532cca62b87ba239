"""Accuracy against one threshold, with and without test-time augmentation.

For every labelled image the network runs once per ``--tta`` value; each threshold of the
sweep is then re-applied to the kept output (``reapply``) and scored against the ground
truth (the metrics of ``cellseg evaluate``, averaged over images). The result shows what
test-time augmentation does at each threshold rather than only at the model's own.

    .venv/bin/python bench/threshold_sweep.py \\
        --weights src/napari_cellseg/_sample_data/models/maskrcnn_dsb.safetensors \\
        --data /tmp/dsbval --tta 1 4

``--param`` is the post-processing field swept (default: ``score_threshold`` for a Mask
R-CNN, ``prob_threshold`` for a U-Net). Writes ``bench/results/threshold_sweep_<model>.json``
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("dsb_ap", "ap@0.5", "f1@0.5", "pixel_iou")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with images/, masks/")
    parser.add_argument("--tta", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--param", default=None, help="post-processing field swept")
    parser.add_argument(
        "--values", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7], help="its values"
    )
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from napari_cellseg.inference import predict, reapply
    from napari_cellseg.io.images import read_image, read_labels
    from napari_cellseg.labels.metrics import evaluate_pair, summarise
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import PredictParams
    from napari_cellseg.training.pairs import scan_training_folders

    model = load_weights(args.weights, device=args.device)
    param = args.param or (
        "score_threshold" if model.card.family == "maskrcnn" else "prob_threshold"
    )
    pairs = scan_training_folders([args.data])[: args.max_images]
    runs = {}
    for tta in args.tta:
        per_value: dict[float, list[dict[str, float]]] = {v: [] for v in args.values}
        start = time.perf_counter()
        for pair in pairs:
            image = read_image(pair.image_path)
            truth = np.asarray(read_labels(pair.mask_path))
            params = PredictParams(device=args.device, axes=image.axes, tta=tta)
            prediction = predict(image.data, model, params)
            own = prediction.params.post
            for value in args.values:
                labels = reapply(prediction, replace(own, **{param: value})).labels
                per_value[value].append(evaluate_pair(truth, labels))
        runs[str(tta)] = {
            "seconds": time.perf_counter() - start,
            "own_post": {param: getattr(own, param)},
            "by_value": {str(v): summarise(scores) for v, scores in per_value.items()},
        }
        print(f"tta {tta}: {len(pairs)} images in {runs[str(tta)]['seconds']:.0f} s", flush=True)
    out = {
        "what": f"accuracy against {param}, one network run per image and tta, on "
        f"{len(pairs)} images of {args.data}",
        "weights": args.weights.name,
        "param": param,
        "hardware": {
            "platform": platform.platform(),
            "device": args.device,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "runs": runs,
    }
    path = args.out or ROOT / "bench" / "results" / f"threshold_sweep_{args.weights.stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    header = " | ".join(f"tta {t}: " + " / ".join(SHOWN) for t in args.tta)
    print(f"| {param} | {header} |")
    print("|---|" + "---|" * len(args.tta))
    for v in args.values:
        cells = [
            " / ".join(f"{runs[str(t)]['by_value'][str(v)][k]:.3f}" for k in SHOWN)
            for t in args.tta
        ]
        print(f"| {v} | " + " | ".join(cells) + " |")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
