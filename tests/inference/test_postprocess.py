"""Network output to instance labels (napari_cellseg.inference.postprocess)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference import postprocess
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import maskrcnn_instances, unet_instances
from napari_cellseg.params import PostprocessParams

THREE = ["background", "interior", "boundary"]
SHAPE = (64, 80)


def test_doctests() -> None:
    result = doctest.testmod(postprocess, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def _disc(center: tuple[float, float], radius: float, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _two_touching_discs() -> tuple[np.ndarray, np.ndarray]:
    a, b = _disc((32, 26), 12), _disc((32, 48), 12)  # centres 22 apart: discs overlap
    assert (a & b).any()
    return a, b


def _three_class_probs(objects: list[np.ndarray]) -> np.ndarray:
    """Synthetic softmax output: interior inside objects, boundary on their rims."""
    fg = np.any(objects, axis=0)
    rim = np.zeros(SHAPE, bool)
    for obj in objects:
        rim |= obj & ~ndi.binary_erosion(obj, iterations=2)
    interior = fg & ~rim
    probs = np.zeros((3, *SHAPE), np.float32)
    probs[0] = np.where(fg, 0.05, 0.9)
    probs[1] = np.where(interior, 0.9, np.where(fg, 0.15, 0.05))
    probs[2] = np.where(rim, 0.8, np.where(fg, 0.05, 0.05))
    probs /= probs.sum(axis=0, keepdims=True)
    return probs


def _assert_sequential(labels: np.ndarray, n: int) -> None:
    assert labels.dtype == np.uint16
    assert sorted(np.unique(labels).tolist()) == list(range(n + 1))


# --- U-Net -------------------------------------------------------------------------------


def test_three_class_watershed_splits_touching_discs() -> None:
    a, b = _two_touching_discs()
    labels = unet_instances(_three_class_probs([a, b]), THREE, PostprocessParams())
    _assert_sequential(labels, 2)
    assert labels.shape == SHAPE
    # each disc's centre belongs to a different object, covering the union
    assert labels[32, 26] != labels[32, 48]
    assert (labels > 0).sum() == pytest.approx((a | b).sum(), rel=0.05)


def test_one_class_distance_watershed_splits_touching_discs() -> None:
    a, b = _two_touching_discs()
    fg = (a | b).astype(np.float32) * 0.9 + 0.05
    labels = unet_instances(fg[None], ["foreground"], PostprocessParams(min_distance=5))
    _assert_sequential(labels, 2)
    assert labels[32, 26] != labels[32, 48]
    assert ((labels > 0) == (a | b)).all()


@pytest.mark.parametrize("min_distance", [1, 3, 5])
def test_distance_watershed_keeps_elongated_cells_whole(min_distance: int) -> None:
    rod = np.zeros(SHAPE, bool)
    rod[5:15, 10:70] = True  # a ridge of equal distance peaks
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    ellipse = ((yy - 40) / 8) ** 2 + ((xx - 40) / 30) ** 2 <= 1
    fg = (rod | ellipse).astype(np.float32)[None]
    labels = unet_instances(fg, ["foreground"], PostprocessParams(min_distance=min_distance))
    _assert_sequential(labels, 2)
    assert labels[10, 12] == labels[10, 68]
    assert labels[40, 12] == labels[40, 68]


def test_distance_watershed_splits_a_row_of_three() -> None:
    fg = _disc((32, 14), 10) | _disc((32, 32), 10) | _disc((32, 50), 10)
    labels = unet_instances(fg.astype(np.float32)[None], ["foreground"], PostprocessParams())
    _assert_sequential(labels, 3)
    assert len({labels[32, 14], labels[32, 32], labels[32, 50]}) == 3


def test_two_class_softmax_like_one_class() -> None:
    a, b = _two_touching_discs()
    fg = (a | b).astype(np.float32) * 0.9 + 0.05
    probs = np.stack([1 - fg, fg])
    labels = unet_instances(probs, ["background", "foreground"], PostprocessParams())
    _assert_sequential(labels, 2)
    # a bare 2-D map is accepted for a single output
    np.testing.assert_array_equal(unet_instances(fg, ["foreground"], PostprocessParams()), labels)


def test_component_without_marker_is_kept() -> None:
    # a thin ring: interior never exceeds the threshold, so no watershed marker
    ring = _disc((32, 40), 10) & ~_disc((32, 40), 8)
    probs = np.zeros((3, *SHAPE), np.float32)
    probs[0] = np.where(ring, 0.1, 0.9)
    probs[1] = np.where(ring, 0.3, 0.05)
    probs[2] = 1 - probs[0] - probs[1]
    labels = unet_instances(probs, THREE, PostprocessParams(fill_holes=False))
    _assert_sequential(labels, 1)
    assert ((labels > 0) == ring).all()


def test_min_size_removes_small_objects() -> None:
    big, small = _disc((20, 20), 8), _disc((50, 60), 2)  # 201 and 13 pixels
    fg = (big | small).astype(np.float32)
    keep_both = unet_instances(fg[None], ["foreground"], PostprocessParams(min_size=10))
    assert keep_both.max() == 2
    only_big = unet_instances(fg[None], ["foreground"], PostprocessParams(min_size=50))
    _assert_sequential(only_big, 1)
    assert ((only_big > 0) == big).all()


def test_fill_holes_option() -> None:
    square = np.zeros(SHAPE, bool)
    square[10:40, 10:40] = True
    square[20:25, 20:25] = False  # a hole
    fg = square.astype(np.float32)[None]
    filled = unet_instances(fg, ["foreground"], PostprocessParams(fill_holes=True))
    assert filled[22, 22] > 0
    _assert_sequential(filled, 1)
    assert (filled > 0).sum() == 900
    unfilled = unet_instances(fg, ["foreground"], PostprocessParams(fill_holes=False))
    assert unfilled[22, 22] == 0


def test_reapplying_with_another_threshold_changes_labels() -> None:
    a, b = _two_touching_discs()
    fg = np.where(a | b, 0.6, 0.05).astype(np.float32)
    fg[_disc((32, 48), 12)] = 0.4  # the right disc is a weak detection
    probs = fg[None].copy()
    low = unet_instances(probs, ["foreground"], PostprocessParams(prob_threshold=0.3))
    high = unet_instances(probs, ["foreground"], PostprocessParams(prob_threshold=0.5))
    assert low.max() == 2
    assert high.max() == 1
    np.testing.assert_array_equal(probs[0], fg)  # probabilities untouched (a copy, not a view)


def test_empty_output_gives_empty_labels() -> None:
    probs = np.zeros((3, *SHAPE), np.float32)
    probs[0] = 1.0
    labels = unet_instances(probs, THREE, PostprocessParams())
    assert labels.dtype == np.uint16
    assert not labels.any()


def test_output_count_mismatch_is_reported() -> None:
    with pytest.raises(CellsegError, match="do not match the model's 3 outputs"):
        unet_instances(np.zeros((2, 8, 8), np.float32), THREE, PostprocessParams())
    with pytest.raises(CellsegError, match="cannot make instances"):
        unet_instances(np.zeros((1, 8, 8), np.float32), ["cytoplasm"], PostprocessParams())


# --- Mask R-CNN --------------------------------------------------------------------------


def _det(boxes: list[tuple[int, int, int, int]], scores: list[float], classes=None) -> Detections:
    masks = [np.full((y1 - y0, x1 - x0), 0.9, np.float32) for y0, x0, y1, x1 in boxes]
    classes = [1] * len(boxes) if classes is None else classes
    return Detections(np.array(boxes), np.array(scores), np.array(classes), masks)


def test_higher_score_wins_overlap() -> None:
    det = _det([(10, 10, 30, 30), (20, 20, 40, 40)], [0.6, 0.9])
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.9))
    _assert_sequential(labels, 2)
    np.testing.assert_allclose(kept.scores, [0.9, 0.6])
    # label 1 = highest score = second input box, which owns the overlap
    assert labels[25, 25] == 1
    assert labels[15, 15] == 2
    assert labels[35, 35] == 1
    assert (labels == 1).sum() == 400
    assert (labels == 2).sum() == 400 - 100


def test_nms_drops_a_duplicate() -> None:
    det = _det([(10, 10, 30, 30), (11, 11, 31, 31), (40, 40, 50, 50)], [0.8, 0.9, 0.7])
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.5))
    assert len(kept) == 2
    np.testing.assert_allclose(kept.scores, [0.9, 0.7])
    np.testing.assert_array_equal(kept.boxes[0], [11, 11, 31, 31])
    _assert_sequential(labels, 2)
    # with a lenient NMS both overlapping objects survive
    _, lenient = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.95))
    assert len(lenient) == 3


def test_score_threshold() -> None:
    det = _det([(0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50)], [0.3, 0.55, 0.95])
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams(score_threshold=0.5))
    np.testing.assert_allclose(kept.scores, [0.95, 0.55])
    assert labels[5, 5] == 0
    assert labels[45, 45] == 1
    assert labels[25, 25] == 2


def test_max_detections_keeps_the_best() -> None:
    boxes = [(0, 10 * i, 8, 10 * i + 8) for i in range(6)]
    scores = [0.6, 0.9, 0.7, 0.95, 0.8, 0.65]
    labels, kept = maskrcnn_instances(
        _det(boxes, scores), SHAPE, PostprocessParams(max_detections=3)
    )
    np.testing.assert_allclose(kept.scores, [0.95, 0.9, 0.8])
    _assert_sequential(labels, 3)
    assert labels[4, 34] == 1  # box 3 (0.95)


def test_mask_threshold_and_min_size_of_visible_area() -> None:
    det = _det([(10, 10, 30, 30), (12, 12, 22, 22)], [0.9, 0.8])
    det.masks[0][:, 10:] = 0.2  # right half of the best mask is below mask_threshold
    # the second object is hidden by the first except image columns 20-21: 20 pixels
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.9, min_size=10))
    assert len(kept) == 2
    assert (labels == 1).sum() == 200
    assert (labels == 2).sum() == 20
    assert (labels[12:22, 20:22] == 2).all()
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.9, min_size=25))
    assert len(kept) == 1
    _assert_sequential(labels, 1)
    np.testing.assert_allclose(kept.scores, [0.9])
    labels, _ = maskrcnn_instances(det, SHAPE, PostprocessParams(nms_iou=0.9, mask_threshold=0.1))
    assert (labels == 1).sum() == 400


def test_maskrcnn_fill_holes_and_clipping() -> None:
    det = _det([(-5, -5, 15, 15)], [0.9])
    det.masks[0][10, 10] = 0.0  # a hole at image pixel (5, 5)
    labels, _ = maskrcnn_instances(det, SHAPE, PostprocessParams())
    assert labels[5, 5] == 1
    assert (labels == 1).sum() == 225
    labels, _ = maskrcnn_instances(det, SHAPE, PostprocessParams(fill_holes=False))
    assert labels[5, 5] == 0


def test_maskrcnn_empty() -> None:
    labels, kept = maskrcnn_instances(Detections(), SHAPE, PostprocessParams())
    assert labels.shape == SHAPE
    assert labels.dtype == np.uint16
    assert not labels.any()
    assert len(kept) == 0
    labels, kept = maskrcnn_instances(_det([(0, 0, 10, 10)], [0.1]), SHAPE, PostprocessParams())
    assert not labels.any()
    assert len(kept) == 0


def test_table_maps_label_to_score_and_class() -> None:
    det = _det(
        [(0, 0, 10, 10), (20, 20, 30, 40), (40, 40, 50, 50)],
        [0.7, 0.95, 0.8],
        classes=[1, 2, 3],
    )
    labels, kept = maskrcnn_instances(det, SHAPE, PostprocessParams())
    table = object_table(labels, scores=kept.scores, classes=kept.classes)
    assert set(table) == {
        "label", "area", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "score", "class"
    }  # fmt: skip
    assert table["label"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(table["score"], [0.95, 0.8, 0.7])
    assert table["class"].tolist() == [2, 3, 1]
    assert table["area"].tolist() == [200, 100, 100]
    row = 0
    assert (table["bbox_y0"][row], table["bbox_x0"][row]) == (20, 20)
    assert (table["bbox_y1"][row], table["bbox_x1"][row]) == (30, 40)
    for i, label in enumerate(table["label"]):
        ys, xs = np.nonzero(labels == label)
        y0, x0, y1, x1 = kept.boxes[label - 1]
        assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (y0, x0, y1, x1)
        assert table["score"][i] == kept.scores[label - 1]
