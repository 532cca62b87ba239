"""Label editing operations on small hand-made label images."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.labels import editing
from napari_cellseg.labels import lookup as label_lookup
from napari_cellseg.labels.editing import (
    changed_ids,
    delete_objects,
    fill_holes,
    label_changes,
    merge_objects,
    next_free_label,
    object_at,
    object_bbox_centre,
    objects_bbox,
    relabel_sequential,
    remove_small,
    split_object,
)


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture
def blobs() -> np.ndarray:
    labels = np.zeros((10, 12), np.uint16)
    labels[1:4, 1:4] = 3
    labels[1:4, 5:8] = 7
    labels[6:9, 2:6] = 12
    labels[8, 10] = 20  # a one-pixel object
    return labels


@pytest.mark.parametrize("module", [editing, label_lookup])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_delete_objects(blobs: np.ndarray) -> None:
    before = blobs.copy()
    out = delete_objects(blobs, [7, 20])
    assert not np.isin(out, [7, 20]).any()
    assert np.array_equal(blobs, before)  # input untouched
    assert changed_ids(blobs, out) == [7, 20]
    assert np.array_equal(out[blobs == 3], blobs[blobs == 3])


def test_delete_errors(blobs: np.ndarray) -> None:
    with pytest.raises(CellsegError, match="no object with id 99"):
        delete_objects(blobs, [3, 99])
    with pytest.raises(CellsegError, match="no object to delete"):
        delete_objects(blobs, [0])


def test_merge_keeps_smallest_id(blobs: np.ndarray) -> None:
    out, kept = merge_objects(blobs, [12, 7])
    assert kept == 7
    assert not (out == 12).any()
    assert np.array_equal(out == 7, (blobs == 7) | (blobs == 12))
    assert changed_ids(blobs, out) == [7, 12]  # 7 grew, 12 vanished


def test_merge_errors(blobs: np.ndarray) -> None:
    with pytest.raises(CellsegError, match="at least two"):
        merge_objects(blobs, [3, 3])
    with pytest.raises(CellsegError, match="no object with id 5"):
        merge_objects(blobs, [3, 5])


@pytest.fixture
def two_discs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (60, 80)
    a, b = disc(shape, (30, 25), 14), disc(shape, (30, 51), 14)
    b &= ~a
    labels = np.zeros(shape, np.uint16)
    labels[a | b] = 4
    labels[2:6, 2:6] = 9  # another object, inside no bbox of interest
    return labels, a, b


def test_split_two_touching_discs_distance(two_discs) -> None:
    labels, a, b = two_discs
    out, new_ids = split_object(labels, 4, [(30, 25), (30, 51)])
    assert new_ids == [10]
    assert iou(out == 4, a) > 0.9
    assert iou(out == 10, b) > 0.9
    assert np.array_equal(out == 9, labels == 9)
    assert ((out == 4) | (out == 10)).sum() == (labels == 4).sum()  # no pixel lost


def test_split_on_image_gradient(two_discs) -> None:
    labels, a, b = two_discs
    image = np.zeros((*labels.shape, 3), np.uint8)
    image[a] = 200
    image[b] = 90  # different brightness: the edge between the discs is the split line
    out, new_ids = split_object(labels, 4, [(30, 20), (30, 55)], image=image)
    assert iou(out == 4, a) > 0.9
    assert iou(out == new_ids[0], b) > 0.9


def test_split_stays_inside_the_bbox() -> None:
    labels = np.zeros((30, 30), np.uint16)
    labels[5:25, 5:25] = 1
    labels[10:15, 10:15] = 2  # inside object 1's bbox (a hole filled by object 2)
    labels[27:29, 27:29] = 3
    out, new_ids = split_object(labels, 1, [(6, 6), (23, 23)])
    assert np.array_equal(out == 2, labels == 2)
    assert np.array_equal(out == 3, labels == 3)
    assert set(changed_ids(labels, out)) == {1, *new_ids}
    assert new_ids == [4]


def test_split_errors(two_discs) -> None:
    labels, _, _ = two_discs
    with pytest.raises(CellsegError, match=r"seed \(3, 3\) is not inside object 4"):
        split_object(labels, 4, [(30, 25), (3, 3)])
    with pytest.raises(CellsegError, match="at least two seeds"):
        split_object(labels, 4, [(30, 25), (30.2, 25.1)])
    with pytest.raises(CellsegError, match="no object with id 5"):
        split_object(labels, 5, [(30, 25), (30, 51)])
    with pytest.raises(CellsegError, match="does not match"):
        split_object(labels, 4, [(30, 25), (30, 51)], image=np.zeros((5, 5)))


def test_split_upcasts_when_ids_overflow() -> None:
    labels = np.zeros((5, 9), np.uint8)
    labels[1:4, 1:8] = 1
    labels[0, 0] = 255
    out, new_ids = split_object(labels, 1, [(2, 1), (2, 7)])
    assert new_ids == [256]
    assert out.dtype == np.uint32


def test_fill_holes_only_background(blobs: np.ndarray) -> None:
    ring = np.zeros((7, 7), np.uint16)
    ring[1:6, 1:6] = 1
    ring[2:5, 2:5] = 0
    ring[3, 3] = 2  # an object inside the hole is kept
    out = fill_holes(ring)
    assert out[3, 3] == 2
    assert (out[1:6, 1:6] != 0).all()
    assert np.array_equal(fill_holes(ring, ids=[2]), ring)
    assert np.array_equal(fill_holes(ring, ids=[]), ring)


def test_remove_small(blobs: np.ndarray) -> None:
    out, removed = remove_small(blobs, 10)
    assert removed == [3, 7, 20]
    assert set(np.unique(out)) == {0, 12}
    out, removed = remove_small(blobs, 0)
    assert removed == []
    assert np.array_equal(out, blobs)


def test_relabel_sequential_keeps_dtype(blobs: np.ndarray) -> None:
    out = relabel_sequential(blobs)
    assert out.dtype == blobs.dtype
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    assert np.array_equal(out == 1, blobs == 3)


def test_lookups(blobs: np.ndarray) -> None:
    assert next_free_label(blobs) == 21
    assert object_at(blobs, (2, 6)) == 7
    assert object_at(blobs, (0, 0)) == 0
    assert object_at(blobs, (-1, 3)) == 0
    assert object_bbox_centre(blobs, 12) == (7.0, 3.5)
    assert objects_bbox(blobs, [3, 7]) == (slice(1, 4), slice(1, 8))
    assert objects_bbox(blobs, [3], pad=2) == (slice(0, 6), slice(0, 6))
    assert objects_bbox(blobs, [99]) is None
    with pytest.raises(CellsegError):
        object_bbox_centre(blobs, 99)


def test_label_changes_in_region(blobs: np.ndarray) -> None:
    after = delete_objects(blobs, [7])
    region = objects_bbox(blobs, [7])
    idx, values = label_changes(blobs, after, region)
    full_idx, full_values = label_changes(blobs, after)
    assert all(np.array_equal(a, b) for a, b in zip(idx, full_idx, strict=True))
    assert (values == 0).all()
    assert len(values) == len(full_values) == 9


def test_works_on_3d_stacks() -> None:
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[1, 5:15, 3:27] = 2
    out, new_ids = split_object(labels, 2, [(1, 10, 5), (1, 10, 24)])
    assert (out[1] == new_ids[0]).any()
    assert out[0].max() == 0 and out[2].max() == 0
