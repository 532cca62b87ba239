"""The Measure tab's arrays-in, table-out job: planes, shapes only, mismatches."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg._napari._measure_jobs import measure_layer_arrays, summary, summary_rows
from napari_cellseg.batch.measure import measure_labels
from napari_cellseg.errors import CellsegError


def two_objects(shape=(20, 30)) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    labels[2:6, 3:9] = 4  # 24 px
    labels[10:18, 12:20] = 9  # 64 px
    return labels


def test_2d_with_an_rgb_image_gives_the_batch_columns() -> None:
    labels = two_objects()
    image = np.zeros((20, 30, 3), np.uint8)
    image[labels == 4] = (10, 20, 30)
    image[labels == 9] = (200, 100, 50)
    table = measure_layer_arrays(labels, image, "YXS", pixel_size_um=0.5)
    assert table["label"].tolist() == [4, 9]
    assert table["area"].tolist() == [24, 64]
    assert table["area_um2"].tolist() == [6.0, 16.0]
    assert table["mean_intensity_c0"].tolist() == [10, 200]
    assert table["mean_intensity_c2"].tolist() == [30, 50]
    expected = measure_labels(labels, image, "YXS", (0.5, 0.5))
    assert table.keys() == expected.keys()  # the same columns as `cellseg batch --measure`


def test_no_image_measures_shapes_only() -> None:
    table = measure_layer_arrays(two_objects(), None, None)
    assert table["area"].tolist() == [24, 64]
    assert not [k for k in table if "intensity" in k]
    assert "area_um2" not in table


def test_a_stack_of_labels_over_a_stack() -> None:
    labels = np.stack([two_objects(), np.zeros((20, 30), np.uint16)])
    labels[1, 0:3, 0:3] = 1
    image = np.ones((2, 20, 30), np.uint16) * np.array([5, 7], np.uint16)[:, None, None]
    table = measure_layer_arrays(labels, image, "ZYX")
    assert table["z"].tolist() == [0, 0, 1]
    assert table["label"].tolist() == [4, 9, 1]
    assert table["mean_intensity_c0"].tolist() == [5, 5, 7]


def test_one_plane_of_labels_over_a_time_lapse() -> None:
    image = np.zeros((3, 20, 30), np.uint8)
    image[2] = 99
    table = measure_layer_arrays(two_objects(), image, "TYX", plane=(2,))
    assert table["t"].tolist() == [2, 2]
    assert next(iter(table)) == "t"
    assert table["mean_intensity_c0"].tolist() == [99, 99]


@pytest.mark.parametrize(
    ("labels", "image", "axes", "plane", "message"),
    [
        (two_objects(), np.zeros((21, 30)), "YX", None, "is 20×30 pixels but 'img' is 21×30"),
        (np.zeros((2, 20, 30), np.uint8), np.zeros((3, 20, 30)), "ZYX", None, "has planes"),
        (two_objects(), np.zeros((3, 20, 30)), "TYX", None, "has 2 dimensions but 'img' has 3"),
        (np.zeros((20, 30), np.float32), None, None, None, "float32 values, not object ids"),
        (np.zeros(5, np.uint8), None, None, None, "has 1 dimensions"),
    ],
)
def test_labels_that_do_not_fit_get_a_clear_message(labels, image, axes, plane, message) -> None:
    with pytest.raises(CellsegError, match=message):
        measure_layer_arrays(labels, image, axes, plane=plane, labels_name="lab", image_name="img")


def test_summary() -> None:
    assert summary({"label": np.array([], int), "area": np.array([])}) == "no objects"
    table = measure_layer_arrays(two_objects(), None, None, pixel_size_um=0.5)
    assert summary(table) == "2 objects, median area 44 px (11.0 µm²)"


def test_summary_rows() -> None:
    image = np.zeros((20, 30), np.uint8)
    image[10:18, 12:20] = 100
    table = measure_layer_arrays(two_objects(), image, "YX", pixel_size_um=0.5)
    names, rows = summary_rows(table)
    assert names == [
        "area",
        "area_um2",
        "perimeter",
        "perimeter_um",
        "eccentricity",
        "solidity",
        "mean_intensity_c0",
    ]
    assert rows[0] == ["44", "44", "24", "64"]  # median, mean, min, max of the areas
    assert rows[-1] == ["50", "50", "0", "100"]
    empty = measure_layer_arrays(np.zeros((5, 5), np.uint8), None, None)
    names, rows = summary_rows(empty)
    assert names[:1] == ["area"] and rows[0] == ["", "", "", ""]
