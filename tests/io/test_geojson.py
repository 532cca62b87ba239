"""Labels -> QuPath GeoJSON -> labels, the document's layout, and bad files.

Tolerance: the outlines run along pixel edges (marching squares at level 0.5, outer corners
cut diagonally), and a pixel belongs to a polygon when its centre is inside, so the round
trip is exact: the same objects, pixel for pixel (IoU 1.0 per object, not just >= 0.9).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_shapes import cells, iou_per_object

from napari_cellseg.errors import CellsegError, ImageReadError, ImageWriteError
from napari_cellseg.io.geojson import labels_to_geojson, read_geojson_labels, write_geojson
from napari_cellseg.io.outlines import ring_area


def test_round_trip_of_touching_objects_with_holes(tmp_path) -> None:
    labels = cells()
    labels[20:30, 30:40] = 99
    labels[23:27, 33:37] = 0  # a hole
    labels[24:26, 34:36] = 98  # an island in the hole: another object
    path = write_geojson(tmp_path / "cells.geojson", labels, pixel_size_um=(0.25, 0.25))
    back, meta = read_geojson_labels(path)
    assert back.shape == labels.shape and back.dtype == np.uint16
    assert set(np.unique(back)) == set(np.unique(labels))
    assert min(iou_per_object(labels, back).values()) >= 0.9
    np.testing.assert_array_equal(back, labels)  # in fact exact
    assert meta == {"shape": [60, 80], "axes": "YX", "pixel_size_um": [0.25, 0.25]}


def test_features_follow_qupath_conventions() -> None:
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 3:13] = 5
    labels[4:6, 5:8] = 0  # a hole
    labels[12:15, 2:5] = 6
    labels[12:15, 20:23] = 6  # a second piece
    image = np.full((20, 30), 10.0)
    image[labels == 6] = 50.0
    doc = labels_to_geojson(labels, image=image, pixel_size_um=(0.5, 0.5), classification="Cell")
    assert doc["type"] == "FeatureCollection"
    five, six = doc["features"]
    assert five["geometry"]["type"] == "Polygon"
    outer, hole = (np.array(r) for r in five["geometry"]["coordinates"])
    assert ring_area(outer) > 0 > ring_area(hole)  # GeoJSON's orientation
    assert outer[:, 0].min() == 3.0 and outer[:, 0].max() == 13.0  # x first, pixel edges
    assert outer[:, 1].min() == 2.0 and outer[:, 1].max() == 8.0
    assert six["geometry"]["type"] == "MultiPolygon"
    assert len(six["geometry"]["coordinates"]) == 2
    props = six["properties"]
    assert props["objectType"] == "detection"
    assert props["name"] == "6"
    assert props["classification"] == {"name": "Cell"}
    m = props["measurements"]
    assert m["label"] == 6 and m["area"] == 18.0 and m["mean_intensity"] == 50.0
    assert m["centroid_x"] == pytest.approx(12.5) and m["centroid_y"] == pytest.approx(13.5)
    assert m["area_um2"] == pytest.approx(4.5)
    assert m["equivalent_diameter"] == pytest.approx(np.sqrt(4 * 18 / np.pi))
    json.dumps(doc)  # plain JSON types only


def test_several_channels_give_one_mean_per_channel() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1:4, 1:4] = 1
    image = np.stack([np.full((6, 6), 3.0), np.full((6, 6), 8.0)], axis=-1)
    (feature,) = labels_to_geojson(labels, image=image)["features"]
    m = feature["properties"]["measurements"]
    assert (m["mean_intensity_c0"], m["mean_intensity_c1"]) == (3.0, 8.0)


@pytest.mark.parametrize("axes", ["ZYX", "TYX", "TZYX"])
def test_stacks_keep_their_planes(tmp_path, axes) -> None:
    shape = (2, 3, 30, 40)[-len(axes) :]
    labels = np.zeros(shape, np.uint16)
    for index in np.ndindex(*shape[:-2]):
        labels[index] = cells((30, 40), seed=sum(index))
    path = write_geojson(tmp_path / "stack.geojson", labels, axes=axes)
    back, meta = read_geojson_labels(path)
    assert meta["axes"] == axes
    np.testing.assert_array_equal(back, labels)
    planes = {
        tuple(f["geometry"]["plane"].values()) for f in json.loads(path.read_text())["features"]
    }
    assert len(planes) == int(np.prod(shape[:-2]))


def test_empty_labels_give_an_empty_collection(tmp_path) -> None:
    path = write_geojson(tmp_path / "empty.geojson", np.zeros((7, 9), np.uint16))
    assert json.loads(path.read_text())["features"] == []
    back, _ = read_geojson_labels(path)
    assert back.shape == (7, 9) and not back.any()


def test_objects_at_the_border_and_single_pixels() -> None:
    labels = np.zeros((5, 5), np.uint32)
    labels[0, 0] = 1
    labels[4, :] = 70000  # uint32 labels, along the edge
    doc = labels_to_geojson(labels)
    assert [f["properties"]["name"] for f in doc["features"]] == ["1", "70000"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection", "features": []}', "not a GeoJSON napari-cellseg wrote"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path, text, message) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(ImageReadError, match=message) as info:
        read_geojson_labels(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_feature_that_is_not_a_polygon_is_named(tmp_path) -> None:
    doc = labels_to_geojson(cells((20, 20)))
    doc["features"][1]["geometry"] = {"type": "Point", "coordinates": [1, 2]}
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(ImageReadError, match="feature 2 is a Point"):
        read_geojson_labels(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CellsegError, match="file not found"):
        read_geojson_labels(tmp_path / "nope.geojson")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    import errno
    import os

    target = tmp_path / "x.geojson"
    target.write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ImageWriteError, match="disk is full") as info:
        write_geojson(target, cells((20, 20)))
    assert str(target) in str(info.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.geojson"]


def test_a_missing_folder_is_named(tmp_path) -> None:
    with pytest.raises(ImageWriteError, match="folder does not exist"):
        write_geojson(tmp_path / "missing" / "x.geojson", cells((20, 20)))
