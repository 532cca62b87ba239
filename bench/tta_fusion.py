"""Fusion rules for Mask R-CNN test-time augmentation, compared on the same detections.

Every image runs once with ``--tta`` copies. The detections of each copy, mapped back onto
the tile, are kept (a pickle cache, so a second run only re-scores). Then several ways of
fusing the copies are scored at several score thresholds against the ground truth, with
the metrics of ``cellseg evaluate``:

- ``all``: the shipped rule (``inference.tta.fuse_copies``). An object's score is the sum
  of its finders' scores over the number of copies, so a copy that missed it counts 0;
- ``found/vK``: its score is the mean over the copies that found it, and objects found by
  fewer than K copies are dropped (a vote);
- ``first``: copy 0 alone, i.e. no augmentation: the baseline, in the same run.

Only images that fit one tile are used (tiles of ``--tile`` pixels, at most the model's
``min_size``), so each image's copies are fused once. The split is that of
``bench/accuracy.py``: the training part (``--split tune``) to choose, the 15 % held out
(``--split heldout``) to confirm.

    .venv/bin/python bench/tta_fusion.py \\
        --weights src/napari_cellseg/_sample_data/models/maskrcnn_dsb.safetensors \\
        --data ../shared/data/dsb2018/stage1_train --split tune --max-images 60 \\
        --cache /tmp/tune.pkl --out bench/results/tta_fusion_maskrcnn_tune.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RULES = (("all", 1), ("found", 1), ("found", 2), ("found", 3), ("first", 1))
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SHOWN = ("dsb_ap", "ap@0.5", "f1@0.5")


def fuse_variant(copies, mask_threshold: float, rule: str, votes: int):
    """``rule`` ``all``: the shipped fusion; ``found``: mean over finders, at least ``votes``."""
    from napari_cellseg.inference import tta as detection_tta
    from napari_cellseg.inference.detections import Detections

    if rule == "first":
        return copies[0]
    if rule == "all" and votes == 1:
        return detection_tta.fuse_copies(copies, mask_threshold=mask_threshold)
    every, groups = detection_tta.match_copies(copies, mask_threshold)
    kept_boxes, scores, classes, masks = [], [], [], []
    for members in groups:
        if len(members) < votes:
            continue
        box, mask = detection_tta._mean_mask(members, every.boxes, every.masks)
        found = every.scores[members]
        kept_boxes.append(box)
        scores.append(float(found.sum()) / len(copies) if rule == "all" else float(found.mean()))
        classes.append(int(every.classes[members[0]]))
        masks.append(mask)
    if not kept_boxes:
        return Detections()
    return Detections(np.array(kept_boxes), np.array(scores), np.array(classes), masks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with images/, masks/")
    parser.add_argument("--split", choices=["tune", "heldout"], required=True)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--tta", type=int, default=4)
    parser.add_argument("--tile", type=int, default=800)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, required=True, help="per-copy detections (pickle)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import napari_cellseg.inference.maskrcnn_strategy as strategy
    import napari_cellseg.inference.planes as inference
    from napari_cellseg.inference.postprocess import maskrcnn_instances
    from napari_cellseg.inference.tta import SAME_OBJECT_IOU
    from napari_cellseg.io.images import read_image, read_labels
    from napari_cellseg.labels.metrics import evaluate_pair, summarise
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import PredictParams
    from napari_cellseg.training.pairs import scan_training_folders
    from napari_cellseg.training.split import split_pairs

    train, held = split_pairs(scan_training_folders([args.data]), 0.15, seed=0)
    pairs = (train if args.split == "tune" else held)[: args.max_images]
    model = load_weights(args.weights, device=args.device)
    # our own cache, written by this script: trusted
    cache = pickle.loads(args.cache.read_bytes()) if args.cache.exists() else {}
    recorded: list = []
    shipped = strategy.fuse_copies

    def recorder(copies, mask_threshold=0.5, same_iou=SAME_OBJECT_IOU):
        recorded.append(list(copies))
        return shipped(copies, mask_threshold=mask_threshold, same_iou=same_iou)

    strategy.fuse_copies = recorder  # keep every copy's detections as inference fuses them
    start = time.perf_counter()
    for i, pair in enumerate(pairs):
        if pair.name in cache:
            continue
        image = read_image(pair.image_path)
        recorded.clear()
        params = PredictParams(
            device=args.device, axes=image.axes, tta=args.tta, tile_size=args.tile
        )
        prediction = inference.predict_planes(image.data, model, params)
        one_tile = len(recorded) == 1
        cache[pair.name] = (
            (recorded[0], tuple(prediction.labels.shape), prediction.params.post)
            if one_tile
            else None
        )
        if i % 10 == 0:
            print(f"{i}/{len(pairs)} {time.perf_counter() - start:.0f} s", flush=True)
            args.cache.write_bytes(pickle.dumps(cache))
    args.cache.write_bytes(pickle.dumps(cache))
    strategy.fuse_copies = shipped
    used = [p for p in pairs if cache.get(p.name) is not None]
    print(f"{len(used)} of {len(pairs)} images fit one tile", flush=True)
    truths = {p.name: np.asarray(read_labels(p.mask_path)) for p in used}
    results = {}
    for rule, votes in RULES:
        fused = {}
        for p in used:
            copies, _shape, post = cache[p.name]
            fused[p.name] = fuse_variant(copies, post.mask_threshold, rule, votes)
        for threshold in THRESHOLDS:
            scores = []
            for p in used:
                _copies, shape, post = cache[p.name]
                post = replace(post, score_threshold=threshold)
                labels, _ = maskrcnn_instances(fused[p.name], shape, post)
                scores.append(evaluate_pair(truths[p.name], labels))
            summary = summarise(scores)
            key = f"{rule}/v{votes}/score {threshold}"
            results[key] = {k: summary[k] for k in SHOWN}
            print(key, {k: round(v, 4) for k, v in results[key].items()}, flush=True)
    out = {
        "what": "Mask R-CNN test-time augmentation: fusion rules x score thresholds, the same "
        "per-copy detections for every rule (first = copy 0 = no augmentation)",
        "weights": str(args.weights),
        "split": args.split,
        "n_images": len(used),
        "n_listed": len(pairs),
        "tta": args.tta,
        "tile": args.tile,
        "hardware": {"platform": platform.platform(), "device": args.device},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
