"""remove_small, fill_holes and relabel_sequential serve both the editor and post-processing.

The editor wants new arrays and its dtype kept; post-processing works in place and wants the
smallest label dtype. The references below are the two former implementations, verbatim,
so each caller's output is shown unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential as sk_relabel

from napari_cellseg.io.files import label_dtype
from napari_cellseg.labels.editing import fill_holes, relabel_sequential, remove_small

# --- the former post-processing copies (in place, smallest dtype) ------------------------


def old_post_remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or labels.size == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels


def old_post_fill_object_holes(labels: np.ndarray) -> np.ndarray:
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        crop = labels[box]
        obj = crop == i
        holes = ndi.binary_fill_holes(obj) & ~obj & (crop == 0)
        crop[holes] = i
    return labels


def old_post_relabel(labels: np.ndarray) -> np.ndarray:
    relabelled, _, _ = sk_relabel(labels)
    n = int(relabelled.max()) if relabelled.size else 0
    return relabelled.astype(label_dtype(n), copy=False)


# --- the former editor copies (new arrays, dtype kept) ----------------------------------


def old_edit_fill_holes(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    slices = ndi.find_objects(labels)
    for object_id, region in [(i + 1, s) for i, s in enumerate(slices) if s is not None]:
        obj = labels[region] == object_id
        holes = ndi.binary_fill_holes(obj) & ~obj & (labels[region] == 0)
        out[region][holes] = object_id
    return out


def old_edit_remove_small(labels: np.ndarray, min_size: int) -> tuple[np.ndarray, list[int]]:
    ids, counts = np.unique(labels, return_counts=True)
    removed = [int(i) for i, c in zip(ids, counts, strict=True) if i and c < min_size]
    out = labels.copy()
    if removed:
        out[np.isin(out, removed)] = 0
    return out, removed


def nested_rings() -> np.ndarray:
    """Object 2 encloses object 1 with a gap; object 1 has a hole of its own."""
    labels = np.zeros((13, 13), np.int64)
    labels[1:12, 1:12] = 2
    labels[2:11, 2:11] = 0
    labels[4:9, 4:9] = 1
    labels[6, 6] = 0
    return labels


def random_labels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = np.zeros((48, 64), np.int64)
    seeds[rng.integers(0, 48, 25), rng.integers(0, 64, 25)] = rng.integers(1, 70000, 25)
    grown = ndi.grey_dilation(seeds, size=(int(rng.integers(2, 8)),) * 2)
    grown[rng.random(grown.shape) < 0.08] = 0  # speckle holes
    return grown


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_size", [0, 1, 5, 30])
def test_postprocess_callers_output_unchanged(seed: int, min_size: int) -> None:
    old = random_labels(seed)
    new = old.copy()
    old_post_remove_small(old, min_size)
    old_post_fill_object_holes(old)
    old = old_post_relabel(old)
    out, _ = remove_small(new, min_size, in_place=True)
    assert out is new
    assert fill_holes(new, in_place=True) is new
    new = relabel_sequential(new, dtype_for=label_dtype)
    assert new.dtype == old.dtype
    assert np.array_equal(new, old)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_size", [0, 1, 5, 30])
def test_editor_callers_output_unchanged(seed: int, min_size: int) -> None:
    labels = random_labels(seed).astype(np.uint32)
    before = labels.copy()
    out, removed = remove_small(labels, min_size)
    ref, ref_removed = old_edit_remove_small(labels, min_size)
    assert removed == ref_removed and np.array_equal(out, ref) and out is not labels
    assert np.array_equal(fill_holes(labels), old_edit_fill_holes(labels))
    relabelled = relabel_sequential(labels)
    assert relabelled.dtype == labels.dtype
    assert np.array_equal(labels, before)  # the editor's operations never modify the input


def test_fill_holes_in_place_and_copy_differ_only_where_the_old_copies_did() -> None:
    labels = nested_rings()
    copy_filled = fill_holes(labels)
    assert np.array_equal(copy_filled, old_edit_fill_holes(labels))
    assert copy_filled[6, 6] == 2  # holes found in the input: the outer object takes it
    in_place = labels.copy()
    fill_holes(in_place, in_place=True)
    assert np.array_equal(in_place, old_post_fill_object_holes(labels.copy()))
    assert in_place[6, 6] == 1  # object 1 filled its own hole first


# --- moved from tests/inference/test_postprocess.py ------------------------------------


def test_relabel_is_sequential_and_small() -> None:
    labels = np.array([[0, 40000, 40000], [7, 0, 90000]], np.int64)
    out = relabel_sequential(labels, dtype_for=label_dtype)
    assert out.dtype == np.uint16
    assert out.tolist() == [[0, 2, 2], [1, 0, 3]]


def test_remove_small_and_fill_holes_in_place() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 0
    labels[8, 8] = 2
    assert remove_small(labels, 2, in_place=True)[0] is labels
    assert labels[8, 8] == 0
    assert fill_holes(labels, in_place=True) is labels
    assert labels[3, 3] == 1


def test_fill_holes_keeps_objects_inside_a_hole() -> None:
    labels = np.zeros((9, 9), np.int32)
    labels[1:8, 1:8] = 1
    labels[3:6, 3:6] = 0
    labels[4, 4] = 2
    fill_holes(labels, in_place=True)
    assert labels[4, 4] == 2
    assert (labels[3:6, 3:6] > 0).all()
