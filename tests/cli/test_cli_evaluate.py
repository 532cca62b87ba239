"""``cellseg evaluate`` scores what it is given: perfect predictions score 1, empty ones 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_cellseg.cli import main
from napari_cellseg.io.samples import sample_data_dir

STEMS = ("dsb_brightfield", "dsb_fluorescence", "dsb_he")


def _predictions(tmp_path, make) -> tuple:
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in STEMS:
        truth = tifffile.imread(sample_data_dir() / "masks" / f"{stem}.tif")
        tifffile.imwrite(pred / f"{stem}_labels.tif", make(truth))
    report = tmp_path / "metrics.json"
    args = ["evaluate", "--pred", str(pred), "--gt", str(sample_data_dir()), "--json", str(report)]
    assert main(args) == 0
    return json.loads(report.read_text()), report


def _renumbered(truth: np.ndarray) -> np.ndarray:
    """The same objects under other ids (ids are arbitrary: scores must not change)."""
    ids = np.unique(truth[truth > 0])
    table = np.zeros(int(truth.max()) + 1, np.uint32)
    table[ids] = np.random.default_rng(0).permutation(len(ids)) + 7
    return table[truth]


@pytest.mark.parametrize("make", [lambda t: t, _renumbered], ids=["same", "renumbered"])
def test_the_ground_truth_as_prediction_scores_one(tmp_path, make) -> None:
    result, _ = _predictions(tmp_path, make)
    assert result["n_images"] == 3
    for scores in [result, *result["per_image"]]:
        for key in ("dsb_ap", "ap@0.5", "f1@0.5", "pixel_iou", "pixel_dice"):
            assert scores[key] == pytest.approx(1.0), key
        assert scores["glas_object_f1"] == pytest.approx(1.0)
        assert scores["glas_object_dice"] == pytest.approx(1.0)
        assert scores["glas_object_hausdorff"] == pytest.approx(0.0)
    assert sorted(p["name"] for p in result["per_image"]) == list(STEMS)


def test_an_empty_prediction_scores_zero(tmp_path) -> None:
    result, _ = _predictions(tmp_path, np.zeros_like)
    for scores in [result, *result["per_image"]]:
        for key in ("dsb_ap", "ap@0.5", "f1@0.5", "pixel_iou", "pixel_dice"):
            assert scores[key] == pytest.approx(0.0), key
