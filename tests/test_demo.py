from __future__ import annotations

import json

import imageio.v3 as iio

from napari_cellseg.core.io import read_labels
from napari_cellseg.core.samples import list_samples
from napari_cellseg.demo import run_headless_demo


def test_headless_demo_writes_overlays_labels_and_summary(tmp_path) -> None:
    lines: list[str] = []
    summary = run_headless_demo(tmp_path / "out", log=lines.append)
    samples = list_samples()
    assert len(summary["samples"]) == len(samples) == 3
    for entry, sample in zip(summary["samples"], samples, strict=True):
        overlay = iio.imread(entry["overlay"])
        truth = read_labels(sample.mask_path)
        assert overlay.shape[:2] == truth.shape
        assert (read_labels(entry["labels"]) == truth).all()
        assert entry["ground_truth_objects"] == len(set(truth.ravel().tolist()) - {0})
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["samples"] == summary["samples"]
    assert any("ground-truth nuclei" in line for line in lines)
