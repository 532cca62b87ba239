"""Detector test-time augmentation: each copy's detections mapped back, then fused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.model_runner import TTA_TRANSFORMS
from napari_cellseg.inference.tta import fuse_copies, map_back


def labels_image() -> np.ndarray:
    """Three irregular objects on a 20 × 31 tile (not square: a transpose shows)."""
    labels = np.zeros((20, 31), np.int32)
    labels[2:7, 3:12] = 1
    labels[4:6, 12:14] = 1  # a bump: the mask is not a box
    labels[10:18, 20:29] = 2
    labels[12:19, 2:5] = 3
    return labels


def detections_of(labels: np.ndarray, scores=None) -> Detections:
    ids = [i for i in np.unique(labels) if i]
    boxes, masks = [], []
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        boxes.append([y0, x0, y1, x1])
        masks.append((labels[y0:y1, x0:x1] == i).astype(np.float32))
    scores = np.linspace(0.9, 0.6, len(ids)) if scores is None else scores
    return Detections(np.array(boxes), scores, np.ones(len(ids)), masks)


def painted(det: Detections, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, np.int32)
    for k, ((y0, x0, y1, x1), mask) in enumerate(zip(det.boxes, det.masks, strict=True), 1):
        out[y0:y1, x0:x1][mask > 0.5] = k
    return out


def transformed(labels: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    transpose, flip_rows, flip_columns = transform  # as the runner does: transpose, then flip
    out = labels.T if transpose else labels
    out = out[::-1, :] if flip_rows else out
    return np.ascontiguousarray(out[:, ::-1] if flip_columns else out)


def test_the_eight_copies_are_the_eight_distinct_symmetries_of_the_square() -> None:
    import itertools

    assert len(TTA_TRANSFORMS) == 8
    assert set(TTA_TRANSFORMS) == set(itertools.product((False, True), repeat=3))
    assert TTA_TRANSFORMS[0] == (False, False, False)  # copy 0 is the image itself
    asymmetric = np.arange(12).reshape(3, 4)
    square = np.arange(16).reshape(4, 4)
    copies = {transformed(square, t).tobytes() for t in TTA_TRANSFORMS}
    assert len(copies) == 8  # no two copies show the model the same picture
    assert transformed(asymmetric, TTA_TRANSFORMS[0]).shape == (3, 4)


@pytest.mark.parametrize("transform", TTA_TRANSFORMS)
def test_detections_found_on_a_transformed_tile_map_back_onto_the_tile(transform):
    labels = labels_image()
    seen = detections_of(transformed(labels, transform))
    back = map_back(seen, transform, labels.shape)
    # the same three objects, pixel for pixel (numbering may differ: compare as partitions)
    again = painted(back, labels.shape)
    assert np.array_equal(again > 0, labels > 0)
    for i in (1, 2, 3):
        assert len(np.unique(again[labels == i])) == 1
    np.testing.assert_array_equal(back.scores, seen.scores)


def test_copies_that_agree_fuse_into_one_detection_per_object_with_the_mean_score():
    labels = labels_image()
    copies = [
        map_back(detections_of(transformed(labels, t), scores=[s, s, s]), t, labels.shape)
        for t, s in zip(TTA_TRANSFORMS[:4], (0.9, 0.8, 0.7, 0.6), strict=True)
    ]
    fused = fuse_copies(copies)
    assert len(fused) == 3
    np.testing.assert_allclose(fused.scores, 0.75, rtol=1e-6)
    assert np.array_equal(painted(fused, labels.shape) > 0, labels > 0)
    for mask in fused.masks:  # every copy agreed on every pixel
        assert set(np.unique(mask)) <= {0.0, 1.0}


def test_an_object_only_one_copy_found_keeps_that_share_of_its_score():
    labels = labels_image()
    lonely = np.zeros_like(labels)
    lonely[labels == 2] = 1
    copies = [detections_of(lonely, scores=[0.8])] + [Detections() for _ in range(3)]
    fused = fuse_copies(copies)
    assert len(fused) == 1
    assert fused.scores[0] == pytest.approx(0.2)
    assert fused.masks[0].max() == 1.0  # the shape is that of the copies that saw it


def test_mask_probabilities_are_the_mean_of_the_copies_that_found_the_object():
    a = Detections(np.array([[0, 0, 4, 4]]), [0.9], [1], [np.full((4, 4), 0.9, np.float32)])
    b = Detections(np.array([[0, 0, 4, 5]]), [0.5], [1], [np.full((4, 5), 0.7, np.float32)])
    fused = fuse_copies([a, b, Detections()])
    np.testing.assert_array_equal(fused.boxes, [[0, 0, 4, 5]])  # the union of the boxes
    np.testing.assert_allclose(fused.masks[0][:, :4], 0.8)
    np.testing.assert_allclose(fused.masks[0][:, 4], 0.35)  # only b reached that column
    assert fused.scores[0] == pytest.approx((0.9 + 0.5) / 3)


def test_neighbours_and_weak_overlaps_stay_apart():
    square = np.ones((6, 6), np.float32)
    # copy 0 has two touching objects; copy 1 one object overlapping the first by IoU 1/3
    first = Detections(
        np.array([[0, 0, 6, 6], [0, 6, 6, 12]]), [0.9, 0.8], [1, 1], [square, square]
    )
    second = Detections(np.array([[0, 3, 6, 9]]), [0.7], [1], [square])
    fused = fuse_copies([first, second])
    assert len(fused) == 3
    np.testing.assert_allclose(sorted(fused.scores), [0.35, 0.4, 0.45])


def test_one_copy_or_none_passes_through():
    det = detections_of(labels_image())
    assert fuse_copies([det]) is det
    assert len(fuse_copies([])) == 0
    assert len(fuse_copies([Detections(), Detections()])) == 0
