"""The headless demo pipeline behind ``make run`` when there is no display.

For every bundled sample image and every bundled demo model: segment, write the labels TIFF
and an outline overlay PNG, score against the ground truth, and write a metrics table
(``metrics.csv`` and ``metrics.md``) and ``summary.json`` into ``demo-output/``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHOWN = ("dsb_ap", "ap@0.5", "f1@0.5", "pixel_iou", "glas_object_dice")


def run_headless_demo(
    out_dir: Path = Path("demo-output"),
    *,
    log: Callable[[str], None] = print,
    weights: list[Path] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Run the demo on the sample data, writing into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Output folder (created).
    log : callable
        Receives one human-readable line per step.
    weights : list of Path, optional
        Models to run (default: the bundled demo weights).
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``.

    Returns
    -------
    dict
        The summary also written to ``out_dir / "summary.json"``.
    """
    from napari_cellseg.inference import predict
    from napari_cellseg.io.atomic import atomic_write_text
    from napari_cellseg.io.images import read_image, read_labels, write_labels
    from napari_cellseg.io.overlay import write_overlay_png
    from napari_cellseg.io.samples import list_samples
    from napari_cellseg.labels.metrics import evaluate_pair
    from napari_cellseg.models import list_bundled_weights, read_card
    from napari_cellseg.params import PredictParams

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = list_bundled_weights() if weights is None else list(weights)
    summary: dict[str, Any] = {"out_dir": str(out_dir), "samples": [], "runs": []}
    samples = [(s, read_image(s.image_path), read_labels(s.mask_path)) for s in list_samples()]
    for sample, image, truth in samples:
        overlay = write_overlay_png(out_dir / f"{sample.key}_ground_truth.png", image.data, truth)
        n_truth = len(np.unique(truth)) - 1
        summary["samples"].append(
            {
                "key": sample.key,
                "kind": sample.kind,
                "shape": list(image.data.shape),
                "objects": n_truth,
                "overlay": str(overlay),
            }
        )
        log(
            f"sample {sample.key} ({sample.kind}, {image.axes} {image.data.shape}): "
            f"{n_truth} ground-truth nuclei -> {overlay.name}"
        )
    if not weights:
        log("no demo weights found in sample_data/models/: only the ground truth was drawn")
    for path in weights:
        card = read_card(path)
        model_key = path.name.removesuffix(".safetensors")
        for sample, image, truth in samples:
            start = time.perf_counter()
            prediction = predict(image.data, path, PredictParams(device=device, axes=image.axes))
            seconds = time.perf_counter() - start
            labels_path = write_labels(
                out_dir / f"{sample.key}__{model_key}_labels.tif", prediction.labels
            )
            overlay = write_overlay_png(
                out_dir / f"{sample.key}__{model_key}.png", image.data, prediction.labels
            )
            metrics = evaluate_pair(truth, prediction.labels)
            summary["runs"].append(
                {
                    "sample": sample.key,
                    "kind": sample.kind,
                    "model": model_key,
                    "family": card.family,
                    "objects": prediction.n_objects,
                    "seconds": seconds,
                    "device": prediction.device,
                    "labels": str(labels_path),
                    "overlay": str(overlay),
                    "metrics": metrics,
                }
            )
            log(
                f"{model_key} on {sample.key}: {prediction.n_objects} objects in {seconds:.1f} s "
                f"on {prediction.device}; DSB AP {metrics['dsb_ap']:.3f}, "
                f"F1@0.5 {metrics['f1@0.5']:.3f} -> {labels_path.name}, {overlay.name}"
            )
    if summary["runs"]:
        atomic_write_text(out_dir / "metrics.csv", _csv(summary["runs"]))
        atomic_write_text(out_dir / "metrics.md", _markdown(summary["runs"]))
        log(f"wrote {out_dir / 'metrics.csv'} and {out_dir / 'metrics.md'}")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    log(f"wrote {out_dir / 'summary.json'}")
    return summary


def _csv(runs: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    keys = list(runs[0]["metrics"])
    writer = csv.writer(buffer)
    writer.writerow(["sample", "kind", "model", "family", "objects", "seconds", *keys])
    for r in runs:
        writer.writerow(
            [
                r["sample"],
                r["kind"],
                r["model"],
                r["family"],
                r["objects"],
                f"{r['seconds']:.3f}",
                *(f"{r['metrics'][k]:.4f}" for k in keys),
            ]
        )
    return buffer.getvalue()


def _markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| sample | model | objects | seconds | " + " | ".join(SHOWN) + " |",
        "|---|---|---|---|" + "---|" * len(SHOWN),
    ]
    for r in runs:
        values = " | ".join(f"{r['metrics'][k]:.3f}" for k in SHOWN)
        lines.append(
            f"| {r['sample']} | {r['model']} | {r['objects']} | {r['seconds']:.1f} | {values} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Entry point: ``python -m napari_cellseg.demo``."""
    run_headless_demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
