"""The headless demo pipeline behind ``make run`` when there is no display.

It runs what the product can do today on the bundled sample data and says what it did.
Today: read each sample image and its ground truth, write an outline overlay PNG and a copy
of the labels, check every bundled weight file (card and weights), and write a summary JSON.
Inference and metrics join this pipeline as the engine lands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def run_headless_demo(out_dir: Path = Path("demo-output"), *, log=print) -> dict[str, Any]:
    """Run the demo on the sample data, writing into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Output folder (created).
    log : callable
        Receives one human-readable line per step (``print`` by default).

    Returns
    -------
    dict
        The summary also written to ``out_dir / "summary.json"``.
    """
    from napari_cellseg.core.atomic import atomic_write_text
    from napari_cellseg.core.io import read_image, read_labels, write_labels
    from napari_cellseg.core.overlay import write_overlay_png
    from napari_cellseg.core.samples import list_samples
    from napari_cellseg.models import list_bundled_weights, load_weights

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"samples": [], "models": [], "out_dir": str(out_dir)}
    for sample in list_samples():
        image = read_image(sample.image_path)
        labels = read_labels(sample.mask_path)
        plane = image.data
        overlay = write_overlay_png(
            out_dir / f"{sample.key}_ground_truth_overlay.png", plane, labels
        )
        labels_path = write_labels(out_dir / f"{sample.key}_ground_truth_labels.tif", labels)
        n_objects = int(len(np.unique(labels)) - (1 if (labels == 0).any() else 0))
        summary["samples"].append(
            {
                "key": sample.key,
                "kind": sample.kind,
                "shape": list(plane.shape),
                "axes": image.axes,
                "ground_truth_objects": n_objects,
                "overlay": str(overlay),
                "labels": str(labels_path),
            }
        )
        log(
            f"sample {sample.key} ({sample.kind}, {image.axes} {plane.shape}, {plane.dtype}): "
            f"{n_objects} ground-truth nuclei -> {overlay.name}, {labels_path.name}"
        )
    weights = list_bundled_weights()
    if not weights:
        log("no demo weights are bundled yet (sample_data/models/ is empty): nothing to run")
    for path in weights:
        start = time.perf_counter()
        loaded = load_weights(path)
        seconds = time.perf_counter() - start
        summary["models"].append({"file": str(path), "card": loaded.card.to_dict()})
        log(
            f"model {path.name}: {loaded.card.family} {loaded.card.architecture}, "
            f"loaded and checked in {seconds:.1f} s"
        )
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    log(f"wrote {out_dir / 'summary.json'}")
    return summary


def main() -> int:
    """Entry point: ``python -m napari_cellseg.demo``."""
    run_headless_demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
