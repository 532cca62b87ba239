from __future__ import annotations

import csv
import json

import imageio.v3 as iio
import torch

from napari_cellseg.demo import run_headless_demo
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.samples import list_samples
from napari_cellseg.models import ModelCard, build_model, save_weights


def test_headless_demo_segments_every_sample_with_every_model(tmp_path) -> None:
    torch.manual_seed(0)
    args = {
        "encoder_name": "resnet18",
        "in_channels": 3,
        "classes": 3,
        "encoder_depth": 3,
        "decoder_channels": [32, 16, 8],
    }
    weights = save_weights(
        build_model("unet", **args),
        ModelCard.for_model("unet", args),
        tmp_path / "tiny_unet.safetensors",
    )
    lines: list[str] = []
    out = tmp_path / "out"
    summary = run_headless_demo(out, log=lines.append, weights=[weights], device="cpu")
    samples = list_samples()
    assert len(summary["samples"]) == len(samples) == 3
    assert len(summary["runs"]) == 3
    for run, sample in zip(summary["runs"], samples, strict=True):
        truth = read_labels(sample.mask_path)
        assert read_labels(run["labels"]).shape == truth.shape
        assert iio.imread(run["overlay"]).shape[:2] == truth.shape
        assert 0.0 <= run["metrics"]["dsb_ap"] <= 1.0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["sample"] for r in rows] == [s.key for s in samples]
    assert "| sample | model |" in (out / "metrics.md").read_text()
    assert json.loads((out / "summary.json").read_text())["runs"] == summary["runs"]
    assert any("DSB AP" in line for line in lines)


def test_headless_demo_without_models_draws_the_ground_truth(tmp_path) -> None:
    lines: list[str] = []
    summary = run_headless_demo(tmp_path, log=lines.append, weights=[])
    assert summary["runs"] == []
    assert all((tmp_path / f"{s.key}_ground_truth.png").exists() for s in list_samples())
    assert any("no demo weights" in line for line in lines)
