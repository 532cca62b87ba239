"""The napari reader and writer contributions, called as npe2 calls them (no viewer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_cellseg._napari._file_io import (
    get_reader,
    read_labels_layer,
    write_geojson_layer,
    write_roi_zip_layer,
)
from napari_cellseg.errors import CellsegError
from napari_cellseg.io.imagej_rois import read_roi_zip_labels
from napari_cellseg.io.images import write_labels

REPO_ROOT = Path(__file__).resolve().parents[2]


def _labels() -> np.ndarray:
    labels = np.zeros((3, 20, 24), np.uint16)
    labels[0, 2:8, 2:8] = 1
    labels[1, 4:12, 3:20] = 2
    labels[1, 6:9, 6:9] = 0  # a hole
    labels[2, 10:18, 10:18] = 3
    return labels


def test_geojson_writer_then_reader_gives_the_same_labels_layer(tmp_path) -> None:
    meta = {"name": "cells", "metadata": {"pixel_size_um": (0.3, 0.3)}}
    (written,) = write_geojson_layer(str(tmp_path / "cells.geojson"), _labels(), meta)
    reader = get_reader(written)
    assert reader is read_labels_layer
    ((data, layer_meta, kind),) = reader(written)
    assert kind == "labels" and layer_meta["name"] == "cells"
    np.testing.assert_array_equal(data, _labels())
    assert layer_meta["metadata"]["pixel_size_um"] == [0.3, 0.3]


def test_roi_writer(tmp_path) -> None:
    (written,) = write_roi_zip_layer(str(tmp_path / "cells.zip"), _labels(), {"name": "cells"})
    np.testing.assert_array_equal(read_roi_zip_labels(written, _labels().shape), _labels())


def test_label_tiffs_are_read_as_labels(tmp_path) -> None:
    path = write_labels(tmp_path / "a_labels.tif", _labels())
    ((data, meta, kind),) = get_reader([str(path)])(str(path))
    assert kind == "labels" and meta["name"] == "a_labels"
    np.testing.assert_array_equal(data, _labels())


def test_files_that_are_not_ours_are_left_to_other_readers(tmp_path) -> None:
    foreign = tmp_path / "qupath.geojson"
    foreign.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert get_reader(str(foreign)) is None
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(foreign), str(foreign)]) is None
    with pytest.raises(CellsegError, match="not a GeoJSON napari-cellseg wrote"):
        read_labels_layer(str(foreign))


def test_writing_a_float_layer_is_one_line_naming_the_layer(tmp_path) -> None:
    with pytest.raises(CellsegError, match="layer 'probabilities': labels must be integers"):
        write_geojson_layer(
            str(tmp_path / "p.geojson"), np.zeros((4, 4), np.float32), {"name": "probabilities"}
        )
    assert list(tmp_path.iterdir()) == []


def test_manifest_declares_the_reader_and_writers() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(REPO_ROOT / "napari.yaml")
    readers = manifest.contributions.readers or []
    assert [r.filename_patterns for r in readers] == [
        ["*.geojson", "*_labels.tif", "*_labels.tiff"],
        ["*.svs", "*.ndpi", "*.scn", "*.bif", "*.zarr", "*.ome.tif", "*.ome.tiff"],
    ]
    writers = {w.command: w for w in manifest.contributions.writers or []}
    assert writers["napari-cellseg.write_geojson"].filename_extensions == [".geojson"]
    assert writers["napari-cellseg.write_roi_zip"].filename_extensions == [".zip"]
    commands = {c.id: c.python_name for c in manifest.contributions.commands or []}
    for contribution in [*readers, *writers.values()]:
        module, _, name = commands[contribution.command].partition(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))
