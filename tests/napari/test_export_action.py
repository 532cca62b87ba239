"""The Correct dock's Export… action (GeoJSON / Fiji ROI set) and its helpers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellseg._napari import _export_action as ea
from napari_cellseg._napari import correct_widget as cw
from napari_cellseg.errors import CellsegError
from napari_cellseg.io.geojson import read_geojson_labels
from napari_cellseg.io.imagej_rois import read_roi_zip_labels


def _labels() -> np.ndarray:
    labels = np.zeros((30, 40), np.uint16)
    labels[3:12, 3:15] = 1
    labels[3:12, 15:25] = 2
    labels[6:9, 18:21] = 0  # a hole
    return labels


def test_default_path_sits_beside_the_source(tmp_path) -> None:
    layer = SimpleNamespace(name="a · unet", source=SimpleNamespace(path=None), metadata={})
    assert ea.default_export_path(layer, "roi") == Path.cwd() / "a_unet_rois.zip"
    layer.source.path = str(tmp_path / "a_labels.tif")
    assert ea.default_export_path(layer, "geojson") == tmp_path / "a_labels.geojson"


def test_a_float_layer_is_refused_with_its_name(tmp_path) -> None:
    layer = SimpleNamespace(name="probabilities", data=np.zeros((4, 4), np.float32), metadata={})
    with pytest.raises(CellsegError, match="layer 'probabilities': labels must be integers"):
        ea.export_layer(layer, tmp_path / "p.geojson", "geojson")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gui
def test_the_dock_exports_both_formats(make_napari_viewer, qtbot, tmp_path, monkeypatch) -> None:
    shown: list[str] = []
    errors: list[str] = []
    monkeypatch.setattr(cw, "show_info", shown.append)
    monkeypatch.setattr(cw.helpers, "show_error", errors.append)
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path / "config"))
    viewer = make_napari_viewer()
    image = np.full((30, 40), 7, np.uint8)
    image[_labels() == 2] = 90
    viewer.add_image(image, name="image")
    viewer.add_labels(_labels(), name="cells")
    widget = cw.CorrectWidget(viewer)
    qtbot.addWidget(widget.native)
    widget.image_layer.value = viewer.layers["image"]

    written = widget.export(tmp_path / "cells.geojson")
    back, _ = read_geojson_labels(written)
    np.testing.assert_array_equal(back, _labels())
    features = json.loads(written.read_text())["features"]
    assert features[1]["properties"]["measurements"]["mean_intensity"] == 90.0
    assert shown[-1].startswith("Exported 2 objects of cells to")

    widget.export_format.value = "Fiji ROI set (.zip)"
    monkeypatch.setattr(cw, "ask_export_path", lambda parent, default, fmt: tmp_path / "c.zip")
    widget.export_button.changed.emit(True)
    np.testing.assert_array_equal(read_roi_zip_labels(tmp_path / "c.zip", (30, 40)), _labels())

    monkeypatch.setattr(cw, "ask_export_path", lambda parent, default, fmt: None)
    assert widget.export() is None  # cancelled

    assert widget.export(tmp_path / "missing" / "c.zip") is None
    assert errors and "folder does not exist" in errors[-1]
