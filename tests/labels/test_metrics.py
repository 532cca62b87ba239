"""Tests of the segmentation metrics: hand-computed cases, invariants and a real DSB mask."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial.distance import cdist
from skimage.metrics import hausdorff_distance

from napari_cellseg.errors import CellsegError
from napari_cellseg.labels import metrics
from napari_cellseg.labels.metrics import (
    DSB_THRESHOLDS,
    METRIC_KEYS,
    dsb_ap,
    dsb_ap_curve,
    evaluate_pair,
    glas_object_dice,
    glas_object_f1,
    glas_object_hausdorff,
    match_instances,
    matching_at,
    pixel_dice,
    pixel_iou,
    summarise,
)

MASKS = sorted((Path(__file__).resolve().parents[2] / "sample_data" / "masks").glob("*.tif"))


def two_squares_case() -> tuple[np.ndarray, np.ndarray]:
    """GT: A = 10x10 (100 px), B = 4x4 (16 px). Pred: P1 = top 6 rows of A (60 px, IoU
    60/100 = 0.6, covers 60 % of A) and P2 = a 4x4 false positive touching nothing."""
    gt = np.zeros((20, 20), dtype=np.uint16)
    gt[0:10, 0:10] = 1  # A
    gt[12:16, 12:16] = 2  # B
    pred = np.zeros_like(gt)
    pred[0:6, 0:10] = 1  # P1
    pred[12:16, 0:4] = 2  # P2
    return gt, pred


def erode_labels(labels: np.ndarray, radius: int) -> np.ndarray:
    """Shrink every object by ``radius`` pixels (also where objects touch)."""
    if radius == 0:
        return labels.copy()
    foot = np.ones((2 * radius + 1,) * 2, dtype=bool)
    same = ndimage.minimum_filter(labels, footprint=foot) == ndimage.maximum_filter(
        labels, footprint=foot
    )
    return labels * same


def random_labels(seed: int, shape: tuple[int, int] = (48, 48)) -> np.ndarray:
    """Random blobby label image with gaps, touching objects and non-sequential ids."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    pts = rng.integers(0, shape[0], size=(12, 2))
    seeds[pts[:, 0], pts[:, 1]] = rng.permutation(np.arange(1, 13)) * 3
    _, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    regions = seeds[rows, cols]
    keep = ndimage.gaussian_filter(rng.random(shape), 3) > 0.5
    return regions * keep


# ---------------------------------------------------------------- hand-computed cases


def test_two_squares_dsb_and_matching() -> None:
    gt, pred = two_squares_case()
    # IoU matrix: rows A, B; columns P1, P2 -> only A-P1 overlaps, IoU 60 / 100 = 0.6.
    np.testing.assert_allclose(match_instances(gt, pred), [[0.6, 0.0], [0.0, 0.0]])
    # t = 0.50, 0.55: A-P1 matches (0.6 > t): TP 1, FP 1 (P2), FN 1 (B) -> 1 / 3.
    # t = 0.60 ... 0.95: 0.6 > t fails (strict): TP 0, FP 2, FN 2 -> 0.
    expected = [1 / 3, 1 / 3] + [0.0] * 8
    np.testing.assert_allclose(dsb_ap_curve(gt, pred), expected)
    # DSB score = (1/3 + 1/3 + 8 * 0) / 10 = 1/15.
    assert dsb_ap(gt, pred) == pytest.approx(1 / 15)
    m = matching_at(gt, pred, 0.5)
    # precision = 1 / 2, recall = 1 / 2, F1 = 2*1 / (2*1 + 1 + 1) = 0.5, AP = 1 / 3.
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)
    assert m["ap"] == pytest.approx(1 / 3)
    assert matching_at(gt, pred, 0.6)["tp"] == 0


def test_dsb_thresholds_are_exact() -> None:
    assert DSB_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    # np.arange drift must not matter: IoU exactly 0.65 (13 / 20) is not > 0.65.
    gt = np.zeros((1, 20), dtype=np.uint8)
    gt[0, :] = 1
    pred = np.zeros_like(gt)
    pred[0, :13] = 1
    curve = dsb_ap_curve(gt, pred, np.arange(0.5, 1.0, 0.05))
    assert curve.tolist() == [1.0, 1.0, 1.0] + [0.0] * 7


def test_low_threshold_uses_optimal_matching() -> None:
    # One row: g1 = cols 0-9, g2 = cols 10-19; p2 = cols 0-3, p1 = cols 4-13.
    gt = np.zeros((1, 20), dtype=np.int32)
    gt[0, 0:10], gt[0, 10:20] = 1, 2
    pred = np.zeros_like(gt)
    pred[0, 4:14], pred[0, 0:4] = 1, 2
    # IoU(g1, p1) = 6 / 14, IoU(g1, p2) = 4 / 10, IoU(g2, p1) = 4 / 16.
    np.testing.assert_allclose(match_instances(gt, pred), [[6 / 14, 0.4], [0.25, 0.0]])
    # At t = 0.2 greedy (g1-p1 first) finds 1 match; the optimum is g1-p2 + g2-p1 = 2.
    m = matching_at(gt, pred, 0.2)
    assert (m["tp"], m["fp"], m["fn"], m["ap"]) == (2, 0, 0, 1.0)
    assert matching_at(gt, pred, 0.5)["tp"] == 0


def test_glas_object_f1_coverage_rule() -> None:
    gt, pred = two_squares_case()
    # P1 covers 60 / 100 > 50 % of A -> TP; P2 overlaps nothing -> FP; B -> FN.
    # F1 = 2*1 / (2*1 + 1 + 1) = 0.5.
    assert glas_object_f1(gt, pred) == pytest.approx(0.5)
    low = pred.copy()
    low[4:6] = 0  # P1 now rows 0-3: 40 / 100 = 40 % of A -> not a TP: F1 = 0.
    assert glas_object_f1(gt, low) == 0.0
    half = pred.copy()
    half[5] = 0  # P1 rows 0-4: exactly 50 % -> not "more than 50 %": F1 = 0.
    assert glas_object_f1(gt, half) == 0.0
    # A prediction larger than its GT object is still a TP when it covers > 50 % of it:
    big = np.zeros_like(gt)
    big[0:15, 0:11] = 7  # covers all of A (IoU 100 / 165 only), overlaps nothing else
    # TP 1, FP 0, FN 1 (B): F1 = 2 / 3.
    assert glas_object_f1(gt, big) == pytest.approx(2 / 3)


def test_glas_object_dice_by_hand() -> None:
    gt, pred = two_squares_case()
    # Dice(A, P1) = 2*60 / (100 + 60) = 0.75; B and P2 have no partner: Dice 0.
    # GT side: (100 * 0.75 + 16 * 0) / 116 = 75 / 116.
    # Pred side: (60 * 0.75 + 16 * 0) / 76 = 45 / 76.
    expected = 0.5 * (75 / 116 + 45 / 76)
    assert glas_object_dice(gt, pred) == pytest.approx(expected)
    assert glas_object_dice(pred, gt) == pytest.approx(expected)


@pytest.mark.parametrize(("dr", "dc", "distance"), [(0, 3, 3.0), (3, 4, 5.0), (-6, 8, 10.0)])
def test_hausdorff_shifted_squares(dr: int, dc: int, distance: float) -> None:
    gt = np.zeros((40, 40), dtype=np.uint8)
    gt[12:22, 12:22] = 1
    pred = np.zeros_like(gt)
    pred[12 + dr : 22 + dr, 12 + dc : 22 + dc] = 9
    # One object each, same size: both sides equal the shift length.
    assert glas_object_hausdorff(gt, pred) == pytest.approx(distance)
    assert glas_object_hausdorff(gt, pred) == pytest.approx(hausdorff_distance(gt > 0, pred > 0))


def test_hausdorff_unmatched_object_pairs_with_nearest() -> None:
    gt = np.zeros((12, 30), dtype=np.uint8)
    gt[0:10, 0:10] = 1  # A, 100 px
    gt[0:4, 20:24] = 2  # B, 16 px, no prediction overlaps it
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 5  # exactly A; the nearest prediction to B
    # H(B, A): farthest A pixel from B is (9, 0), nearest B pixel (3, 20): sqrt(6² + 20²);
    # farthest B pixel from A is 23 - 9 = 14 away, so H = sqrt(436).
    # GT side: (100 * 0 + 16 * sqrt(436)) / 116; pred side: A's partner is A -> 0.
    expected = 0.5 * 16 * np.sqrt(436) / 116
    assert glas_object_hausdorff(gt, pred) == pytest.approx(expected)
    assert glas_object_hausdorff(pred, gt) == pytest.approx(expected)


def test_hausdorff_uses_pixel_sets_not_only_boundaries() -> None:
    # A ring prediction inside a filled disc: the farthest disc pixel from the ring is
    # the centre (interior), so H = distance from the centre to the ring's inner edge.
    yy, xx = np.mgrid[-15:16, -15:16]
    r = np.hypot(yy, xx)
    gt = (r <= 12).astype(np.uint8)
    pred = ((r >= 5) & (r <= 6)).astype(np.uint8)
    assert glas_object_hausdorff(gt, pred) == pytest.approx(hausdorff_distance(gt > 0, pred > 0))


def test_pixel_metrics() -> None:
    gt, pred = two_squares_case()
    # Foreground: GT 116 px, pred 76 px, shared 60 px.
    # IoU = 60 / (116 + 76 - 60) = 60 / 132; Dice = 120 / 192.
    assert pixel_iou(gt, pred) == pytest.approx(60 / 132)
    assert pixel_dice(gt, pred) == pytest.approx(120 / 192)


# ---------------------------------------------------------------- edge cases, conventions


def test_both_empty_is_perfect() -> None:
    empty = np.zeros((8, 8), dtype=np.uint16)
    result = evaluate_pair(empty, empty)
    assert result.pop("glas_object_hausdorff") == 0.0
    assert all(value == 1.0 for value in result.values())
    m = matching_at(empty, empty, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["precision"], m["recall"]) == (0, 0, 0, 1.0, 1.0)


@pytest.mark.parametrize("empty_side", ["pred", "gt"])
def test_one_side_empty_scores_zero(empty_side: str) -> None:
    labels = np.zeros((30, 40), dtype=np.uint16)
    labels[2:9, 3:8] = 4
    empty = np.zeros_like(labels)
    gt, pred = (labels, empty) if empty_side == "pred" else (empty, labels)
    result = evaluate_pair(gt, pred)
    assert result.pop("glas_object_hausdorff") == pytest.approx(50.0)  # diagonal of 30 x 40
    assert all(value == 0.0 for value in result.values())
    m = matching_at(gt, pred, 0.5)
    assert m["precision"] == m["recall"] == m["f1"] == m["ap"] == 0.0


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(CellsegError, match=r"\(4, 5\).*\(4, 6\)"):
        evaluate_pair(np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8))
    with pytest.raises(CellsegError, match=r"\(3, 3\).*\(3, 2\)"):
        pixel_iou(np.zeros((3, 3), int), np.zeros((3, 2), int))


def test_input_dtypes() -> None:
    gt, pred = two_squares_case()
    reference = evaluate_pair(gt, pred)
    for dtype in (np.int8, np.uint8, np.int32, np.uint64, np.int64, np.float32):
        assert evaluate_pair(gt.astype(dtype), pred.astype(dtype)) == reference
    assert evaluate_pair(gt > 0, gt > 0)["dsb_ap"] == 1.0
    with pytest.raises(CellsegError, match="whole numbers"):
        dsb_ap(gt + 0.5, pred)
    with pytest.raises(CellsegError, match=">= 0"):
        dsb_ap(-gt.astype(np.int16), pred)
    with pytest.raises(CellsegError, match="integer"):
        dsb_ap(gt.astype(complex), pred)


def test_works_in_3d() -> None:
    vol = np.zeros((6, 10, 10), dtype=np.uint16)
    vol[1:4, 1:5, 1:5] = 3
    vol[2:5, 6:9, 5:9] = 8
    result = evaluate_pair(vol, vol)
    assert result.pop("glas_object_hausdorff") == 0.0
    assert all(value == 1.0 for value in result.values())


def test_summarise() -> None:
    rows = [dict.fromkeys(METRIC_KEYS, 1.0), dict.fromkeys(METRIC_KEYS, 0.0)]
    summary = summarise(rows)
    assert summary["n_images"] == 2
    assert all(summary[key] == 0.5 for key in METRIC_KEYS)
    empty = summarise([])
    assert empty["n_images"] == 0 and np.isnan(empty["dsb_ap"])


def test_doctests() -> None:
    assert doctest.testmod(metrics).failed == 0


# ---------------------------------------------------------------- invariants


def naive_glas(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Per-object reference implementation (slow loops) of the three GlaS metrics."""
    g_ids, p_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    g_masks, p_masks = [gt == i for i in g_ids], [pred == j for j in p_ids]

    def best(mask: np.ndarray, others: list[np.ndarray]) -> int:
        inter = [np.sum(mask & o) for o in others]
        keys = [(-n, o.sum(), k) for k, (n, o) in enumerate(zip(inter, others, strict=True))]
        k = min(keys)[2]
        return k if inter[k] > 0 else -1

    def nearest(mask: np.ndarray, others: list[np.ndarray]) -> int:
        points = np.argwhere(mask)
        return int(np.argmin([cdist(points, np.argwhere(o)).min() for o in others]))

    tp = 0
    for p in p_masks:
        k = best(p, g_masks)
        tp += k >= 0 and np.sum(p & g_masks[k]) > 0.5 * g_masks[k].sum()
    f1 = 2 * tp / (len(g_ids) + len(p_ids))
    dice = haus = 0.0
    for own, others in ((g_masks, p_masks), (p_masks, g_masks)):
        total = sum(m.sum() for m in own)
        for m in own:
            k = best(m, others)
            if k >= 0:
                dice += (
                    0.5 * m.sum() / total * 2 * np.sum(m & others[k]) / (m.sum() + others[k].sum())
                )
            partner = others[k] if k >= 0 else others[nearest(m, others)]
            haus += 0.5 * m.sum() / total * hausdorff_distance(m, partner)
    return f1, dice, haus


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_glas_matches_naive_reference(seed: int) -> None:
    gt, pred = random_labels(seed), random_labels(seed + 100)
    f1, dice, haus = naive_glas(gt, pred)
    assert glas_object_f1(gt, pred) == pytest.approx(f1)
    assert glas_object_dice(gt, pred) == pytest.approx(dice)
    assert glas_object_hausdorff(gt, pred) == pytest.approx(haus)
    iou = [
        [
            np.sum((gt == i) & (pred == j)) / np.sum((gt == i) | (pred == j))
            for j in np.unique(pred)[1:]
        ]
        for i in np.unique(gt)[1:]
    ]
    np.testing.assert_allclose(match_instances(gt, pred), iou)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relabelling_and_swapping(seed: int) -> None:
    gt, pred = random_labels(seed), random_labels(seed + 50)
    reference = evaluate_pair(gt, pred)
    rng = np.random.default_rng(seed)
    lut = np.zeros(gt.max() + 1, dtype=np.uint64)
    lut[1:] = rng.permutation(gt.max()).astype(np.uint64) * 1_000_003 + 2**40  # huge, sparse
    lut2 = np.zeros(pred.max() + 1, dtype=np.int32)
    lut2[1:] = rng.permutation(pred.max()) + 17
    relabelled = evaluate_pair(lut[gt], lut2[pred])
    assert relabelled == pytest.approx(reference)
    swapped = evaluate_pair(pred, gt)
    for key in ("dsb_ap", "ap@0.5", "f1@0.5", "glas_object_dice", "glas_object_hausdorff"):
        assert swapped[key] == pytest.approx(reference[key]), key
    for key in ("pixel_iou", "pixel_dice"):
        assert swapped[key] == pytest.approx(reference[key]), key


@pytest.mark.parametrize("path", MASKS, ids=[p.stem for p in MASKS])
def test_real_mask_perfect_and_eroded(path: Path) -> None:
    gt = tifffile.imread(path)
    perfect = evaluate_pair(gt, gt)
    assert perfect.pop("glas_object_hausdorff") == 0.0
    assert all(value == 1.0 for value in perfect.values())
    results = [evaluate_pair(gt, erode_labels(gt, r)) for r in range(5)]
    for key in ("dsb_ap", "pixel_iou", "pixel_dice", "glas_object_dice"):
        values = [r[key] for r in results]
        assert np.all(np.diff(values) <= 0), (key, values)
        assert values[-1] < values[0], (key, values)
    hausdorff = [r["glas_object_hausdorff"] for r in results]
    assert hausdorff[0] == 0.0 and hausdorff[-1] > hausdorff[1] > 0
