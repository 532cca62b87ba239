"""The export entry point: format names, file names beside the labels, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.exports import (
    export_labels,
    export_path,
    image_for_labels,
    parse_export_formats,
)


def test_formats_are_parsed_and_unknown_ones_refused() -> None:
    assert parse_export_formats("geojson, roi,geojson") == ("geojson", "roi")
    assert parse_export_formats(["ROI"]) == ("roi",)
    with pytest.raises(CellsegError, match="unknown export format 'csv'"):
        parse_export_formats("geojson,csv")


def test_export_paths_sit_beside_the_labels(tmp_path) -> None:
    labels = tmp_path / "a_labels.tif"
    assert export_path(labels, "geojson") == tmp_path / "a_labels.geojson"
    assert export_path(labels, "roi") == tmp_path / "a_rois.zip"
    assert export_path(tmp_path / "mask.png", "roi") == tmp_path / "mask_rois.zip"


@pytest.mark.parametrize("fmt", ["geojson", "roi"])
def test_a_float_layer_is_refused_before_anything_is_written(tmp_path, fmt) -> None:
    with pytest.raises(CellsegError, match="labels must be integers, not float32") as info:
        export_labels(tmp_path / "x", np.zeros((4, 4), np.float32), fmt, source="layer 'image'")
    assert "layer 'image'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_shapes_axes_and_formats_are_one_line(tmp_path) -> None:
    with pytest.raises(CellsegError, match="2-D image or a Z/T stack"):
        export_labels(tmp_path / "x.geojson", np.zeros(5, np.uint8), "geojson")
    with pytest.raises(CellsegError, match="axes 'CYX' do not fit"):
        export_labels(tmp_path / "x.geojson", np.zeros((2, 4, 4), np.uint8), "geojson", axes="CYX")
    with pytest.raises(CellsegError, match="give one export format"):
        export_labels(tmp_path / "x.geojson", np.zeros((4, 4), np.uint8), "geojson,roi")
    with pytest.raises(CellsegError, match="negative values"):
        export_labels(tmp_path / "x.geojson", -np.ones((4, 4), np.int32), "geojson")
    assert list(tmp_path.iterdir()) == []


def test_the_image_is_laid_out_like_the_labels(tmp_path) -> None:
    image = np.zeros((2, 6, 8), np.uint8)  # CYX
    image[1] = 9
    arr = image_for_labels(image, "CYX", (6, 8), "im.tif")
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 1:3] = 1
    path = export_labels(tmp_path / "a.geojson", labels, "geojson", image=arr)
    (feature,) = json.loads(path.read_text())["features"]
    assert feature["properties"]["measurements"]["mean_intensity_c1"] == 9.0
    with pytest.raises(CellsegError, match="does not fit labels of shape"):
        image_for_labels(image, "CYX", (5, 8), "im.tif")
