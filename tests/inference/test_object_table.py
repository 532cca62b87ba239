"""The object table (napari_cellseg.inference.object_table)."""

import doctest

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference import object_table as module
from napari_cellseg.inference.object_table import object_table


def test_doctests() -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_measures_each_label_present() -> None:
    labels = np.zeros((6, 8), np.uint16)
    labels[1:3, 2:5] = 4  # ids need not be consecutive
    labels[5, 7] = 1
    table = object_table(labels)
    assert table["label"].tolist() == [1, 4]
    assert table["area"].tolist() == [1, 6]
    assert [table[k].tolist() for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")] == [
        [5, 1], [7, 2], [6, 3], [8, 5]
    ]  # fmt: skip


def test_signed_labels_are_measured_like_unsigned_ones() -> None:
    labels = np.array([[0, 2, 2], [1, 0, 0]], np.int32)
    signed, unsigned = object_table(labels), object_table(labels.astype(np.uint16))
    for key in unsigned:
        assert signed[key].tolist() == unsigned[key].tolist()


def test_object_table_without_extras_and_errors() -> None:
    table = object_table(np.zeros((5, 5), np.uint16))
    assert set(table) == {"label", "area", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"}
    assert len(table["label"]) == 0
    with pytest.raises(CellsegError, match="labels go up to 3"):
        object_table(np.array([[1, 3]]), scores=np.array([0.5, 0.6]))
    with pytest.raises(CellsegError, match="2-D"):
        object_table(np.zeros((2, 5, 5), np.uint16))
