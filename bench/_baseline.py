"""Today's pipeline before the speed-ups of issue 21, kept as the reference they are held to.

:func:`baseline_pipeline` swaps the old pieces into ``napari_cellseg.inference`` for the
duration of a ``with`` block: tiles of the full tile size with the last one shifted inwards
(:func:`plan_tiles` without ``multiple``), one percentile pass per channel even when the
channels are copies of one grey channel, the whole plane normalised at once, a whole batch
of tiles cut and held at once (no ``in_passes``), every U-Net tile padded to a multiple of
32 (no ``tile_multiple``), Mask R-CNN masks for every candidate down
to score 0.05 (no ``mask_floor``), and the pass-by-pass post-processing below
(a verbatim copy of ``inference/postprocess.py`` before the change); :func:`baseline_loading`
builds a U-Net with every encoder stage, as loading did. ``bench/inference.py
--compare-baseline`` times both; ``tests/inference/test_postprocess_speed.py`` checks that the
new code gives the same labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import regionprops_table
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference.detections import Detections
from napari_cellseg.io.files import label_dtype
from napari_cellseg.labels.editing import fill_holes, relabel_sequential, remove_small
from napari_cellseg.models.normalise import (
    as_channels_first,
    map_channels,
    normalise,
)
from napari_cellseg.models.percentile import _sample
from napari_cellseg.params import PostprocessParams


def _stretch(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The old pipeline's per-channel stretch (as ``models/normalise.py`` had it before session
    21 routed ``minmax`` through ``percentile.apply_ranges``): a new array per channel."""
    if not hi > lo:
        return np.zeros(channel.shape, np.float32)
    return ((channel - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32, copy=False)


def old_to_model_input(
    plane: np.ndarray,
    *,
    input_channels: int,
    channel_handling: str,
    normalisation: Mapping[str, Any],
    channels: Sequence[int] | None = None,
    tiled: bool = False,
) -> np.ndarray:
    """``to_model_input`` with one percentile pass per model channel (the old way: the
    whole plane in float32, whatever ``tiled`` asks)."""
    plane = np.asarray(plane)
    data = map_channels(as_channels_first(plane), input_channels, channel_handling, channels)
    if normalisation.get("method") != "percentile":
        return normalise(data, normalisation, dtype=plane.dtype)
    low, high = float(normalisation.get("low", 1.0)), float(normalisation.get("high", 99.8))
    out = []
    for c in data.astype(np.float32):
        lo, hi = np.percentile(_sample(c), (low, high))
        out.append(_stretch(c, float(lo), float(hi)))
    result = np.stack(out)
    if normalisation.get("clip", True):
        np.clip(result, 0.0, 1.0, out=result)
    return result


@contextmanager
def baseline_loading() -> Iterator[None]:
    """Build U-Nets as before session 22, for a ``load_weights`` inside the block: every
    encoder stage kept and loaded, run or not (``models/unused_stages.py`` drops those a
    shallow encoder never runs: the demo U-Net's ``layer4``, 8.4 M of its 12.0 M parameters)."""
    from napari_cellseg.models import unet

    kept = unet.drop_unused_stages
    unet.drop_unused_stages = lambda encoder, depth: 0
    try:
        yield
    finally:
        unet.drop_unused_stages = kept


@contextmanager
def baseline_pipeline() -> Iterator[None]:
    """Run ``predict_planes`` / ``reapply`` with the old tiling, normalisation and labels."""
    import torch

    from napari_cellseg.inference import (
        maskrcnn_strategy,
        plane_network,
        planes,
        tiling,
        unet_strategy,
    )
    from napari_cellseg.inference.model_runner import ModelRunner

    def contiguous_tiles(self, x):  # CPU tiles were contiguous, not channels-last
        if self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def fixed_tiles(shape, tile_size, overlap, *, multiple=None):
        return tiling.plan_tiles(shape, tile_size, overlap)

    def tiles_of_min_size(card, tile_size, overlap):  # Mask R-CNN tiles capped at min_size
        tile_size = min(tile_size, int(card.builder_args.get("min_size", 800)))
        return tile_size, min(overlap, tile_size // 4)

    swaps = [
        (plane_network, "plan_tiles", fixed_tiles),
        (maskrcnn_strategy, "tile_geometry", tiles_of_min_size),
        (planes, "to_model_input", old_to_model_input),
        (unet_strategy, "in_passes", lambda runner, batches, multiple=32: batches),  # whole
        (unet_strategy, "tile_multiple", lambda card: 32),  # batches held; tiles padded to 32
        (unet_strategy, "unet_instances", unet_instances),
        (unet_strategy, "object_table", object_table),
        (maskrcnn_strategy, "maskrcnn_instances", maskrcnn_instances),
        (maskrcnn_strategy, "object_table", object_table),
        (maskrcnn_strategy, "mask_floor", lambda params: 0.0),  # masks down to 0.05
        (ModelRunner, "_memory_format", contiguous_tiles),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    try:
        for module, name, value in swaps:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


# -- inference/postprocess.py before issue 21 (verbatim below this line) -------------------

_FULL = np.ones((3, 3), bool)  # 8-connectivity for markers and foreground components
_PEAK_HEIGHT = 1.0  # distance peaks must rise this many pixels above their saddles


def _finish(labels: np.ndarray, params: PostprocessParams) -> np.ndarray:
    """Size filter and hole filling in place, then labels 1..N as uint16 (uint32 if needed)."""
    remove_small(labels, params.min_size, in_place=True)
    if params.fill_holes:
        fill_holes(labels, in_place=True)
    return relabel_sequential(labels, dtype_for=label_dtype)


def _channel(probs: np.ndarray, outputs: list[str], name: str) -> np.ndarray | None:
    return probs[outputs.index(name)] if name in outputs else None


def _foreground(fg_prob: np.ndarray, params: PostprocessParams) -> np.ndarray:
    foreground = fg_prob > params.prob_threshold
    if params.fill_holes:  # before splitting too: a hole can sit between several objects
        foreground = ndi.binary_fill_holes(foreground)
    return foreground


def _add_fallback_markers(markers: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Give each foreground component without any marker a marker of its own (itself)."""
    components, n = ndi.label(foreground, structure=_FULL)
    if n == 0:
        return markers
    has_marker = np.zeros(n + 1, bool)
    has_marker[np.unique(components[markers > 0])] = True
    missing = ~has_marker
    missing[0] = False
    if missing.any():
        lut = np.zeros(n + 1, markers.dtype)
        lut[missing] = np.arange(1, int(missing.sum()) + 1) + markers.max()
        extra = lut[components]
        markers = np.where(extra > 0, extra, markers)
    return markers


def unet_instances(
    probs: np.ndarray, outputs: Sequence[str], params: PostprocessParams
) -> np.ndarray:
    """Instance labels from U-Net probabilities (after softmax / sigmoid).

    Three outputs (``background``, ``interior``, ``boundary``): foreground is
    ``1 - P(background) > prob_threshold``; markers are the 8-connected components of
    ``P(interior) > prob_threshold & P(boundary) < boundary_threshold`` inside the
    foreground; a marker-controlled watershed on ``P(boundary)`` fills the foreground.

    One or two outputs (``foreground``, or ``background`` + ``foreground``): foreground is
    ``P(foreground) > prob_threshold``; markers are the peaks of its Euclidean distance
    transform at least ``min_distance`` apart (``skimage.feature.peak_local_max`` per
    foreground component), each grown to its h-maximum region (``skimage.morphology.h_maxima``
    with h = 1 pixel) so that an elongated cell's ridge of equal peaks gives one marker and
    peaks without a saddle at least 1 pixel deep between them merge; a watershed on
    ``-distance`` fills the foreground.

    In both cases a foreground component without a marker becomes one object. With
    ``fill_holes`` the watershed floods the hole-filled foreground and each object's own
    holes are filled afterwards. Objects under ``min_size`` pixels are removed and the labels
    made sequential.

    Parameters
    ----------
    probs : numpy.ndarray
        ``(C, Y, X)`` probabilities, one channel per entry of ``outputs``.
    outputs : sequence of str
        ``ModelCard.outputs``.
    params : PostprocessParams
        Thresholds and sizes.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` labels 1..N, uint16 (uint32 above 65535 objects).
    """
    outputs = list(outputs)
    probs = np.asarray(probs)
    if probs.ndim == 2 and len(outputs) == 1:
        probs = probs[None]
    if probs.ndim != 3 or probs.shape[0] != len(outputs):
        raise CellsegError(
            f"probabilities of shape {probs.shape} do not match the model's {len(outputs)} "
            f"outputs {outputs}; expected (C, Y, X) with C = {len(outputs)}"
        )
    probs = probs.astype(np.float32, copy=False)
    background = _channel(probs, outputs, "background")
    interior = _channel(probs, outputs, "interior")
    boundary = _channel(probs, outputs, "boundary")
    if interior is not None and boundary is not None:
        fg_prob = 1.0 - background if background is not None else interior + boundary
        foreground = _foreground(fg_prob, params)
        seeds = (interior > params.prob_threshold) & (boundary < params.boundary_threshold)
        markers, _ = ndi.label(seeds & foreground, structure=_FULL)
        surface = boundary
    else:
        fg = _channel(probs, outputs, "foreground")
        if fg is None and background is not None:
            fg = 1.0 - background
        if fg is None:
            raise CellsegError(
                f"cannot make instances from outputs {outputs}: expected background/interior/"
                "boundary, background/foreground or foreground"
            )
        foreground = _foreground(fg, params)
        distance = ndi.distance_transform_edt(foreground)
        components, _ = ndi.label(foreground, structure=_FULL)
        peaks = peak_local_max(
            distance,
            min_distance=int(params.min_distance),
            labels=components,
            exclude_border=False,
        )
        # A ridge (elongated cell) has many equal peaks: each marker is a whole h-maximum
        # region that holds a peak, so one ridge gives one marker, not one per peak.
        plateaus, n = ndi.label(h_maxima(distance, _PEAK_HEIGHT), structure=_FULL)
        keep = np.zeros(n + 1, bool)
        keep[plateaus[tuple(peaks.T)]] = True
        keep[0] = False
        markers = np.where(keep[plateaus], plateaus, 0)
        surface = -distance
    markers = _add_fallback_markers(markers, foreground)
    labels = watershed(surface, markers, mask=foreground)
    return _finish(labels, params)


def _clip_binarise(
    det: Detections, shape: tuple[int, int], threshold: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Boxes clipped to the image; masks cropped to match and binarised."""
    h, w = shape
    boxes, masks = [], []
    for (y0, x0, y1, x1), mask in zip(det.boxes, det.masks, strict=True):
        cy0, cx0 = max(int(y0), 0), max(int(x0), 0)
        cy1, cx1 = max(min(int(y1), h), cy0), max(min(int(x1), w), cx0)
        crop = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        boxes.append((cy0, cx0, cy1, cx1))
        masks.append(crop > threshold)
    return np.asarray(boxes, np.int64).reshape(-1, 4), masks


def _mask_nms(boxes: np.ndarray, masks: list[np.ndarray], iou: float) -> list[int]:
    """Greedy mask-IoU NMS over detections already sorted by score; indices kept."""
    areas = [int(m.sum()) for m in masks]
    kept: list[int] = []
    for i in range(len(boxes)):
        if areas[i] == 0:
            continue
        y0, x0, y1, x1 = boxes[i]
        drop = False
        if kept:
            kb = boxes[kept]
            iy0, ix0 = np.maximum(kb[:, 0], y0), np.maximum(kb[:, 1], x0)
            iy1, ix1 = np.minimum(kb[:, 2], y1), np.minimum(kb[:, 3], x1)
            for k in np.flatnonzero((iy1 > iy0) & (ix1 > ix0)):
                j = kept[k]
                a = masks[i][iy0[k] - y0 : iy1[k] - y0, ix0[k] - x0 : ix1[k] - x0]
                b = masks[j][
                    iy0[k] - boxes[j][0] : iy1[k] - boxes[j][0],
                    ix0[k] - boxes[j][1] : ix1[k] - boxes[j][1],
                ]
                inter = int(np.count_nonzero(a & b))
                if inter and inter / (areas[i] + areas[j] - inter) > iou:
                    drop = True
                    break
        if not drop:
            kept.append(i)
    return kept


def maskrcnn_instances(
    det: Detections, shape: tuple[int, int], params: PostprocessParams
) -> tuple[np.ndarray, Detections]:
    """Instance labels from Mask R-CNN detections in image coordinates.

    Steps: drop scores below ``score_threshold``; binarise masks at ``mask_threshold``
    (boxes clipped to the image); greedy mask-IoU NMS in descending score order, comparing
    only detections whose boxes intersect and dropping one whose IoU with a kept detection
    exceeds ``nms_iou``; keep the ``max_detections`` best; paint in descending score order
    where the image is still empty, so **the higher score wins every overlap**; remove
    objects whose visible area is below ``min_size``; fill holes when ``fill_holes``.

    Parameters
    ----------
    det : Detections
        Detections with boxes in image pixels.
    shape : tuple of int
        ``(Y, X)`` of the image.
    params : PostprocessParams
        Thresholds and sizes.

    Returns
    -------
    labels : numpy.ndarray
        ``(Y, X)`` labels 1..N, uint16 (uint32 above 65535 objects).
    kept : Detections
        The N surviving detections in descending score order, with their original boxes
        and probability masks: **label ``i`` is row ``i - 1`` of ``kept``**, so
        ``kept.scores[labels - 1]`` is each pixel's score (see :func:`object_table`).
    """
    h, w = (int(s) for s in shape)
    labels = np.zeros((h, w), np.int64)
    if len(det) == 0:
        return labels.astype(np.uint16), Detections()
    order = np.flatnonzero(det.scores >= params.score_threshold)
    order = order[np.argsort(-det.scores[order], kind="stable")]
    candidates = det.select(order)
    boxes, masks = _clip_binarise(candidates, (h, w), params.mask_threshold)
    kept = _mask_nms(boxes, masks, params.nms_iou)[: params.max_detections]
    for painted, i in enumerate(kept, start=1):
        y0, x0, y1, x1 = boxes[i]
        region = labels[y0:y1, x0:x1]
        region[masks[i] & (region == 0)] = painted
    remove_small(labels, max(params.min_size, 1), in_place=True)
    if params.fill_holes:
        fill_holes(labels, in_place=True)
    present = np.zeros(len(kept) + 1, bool)
    present[np.unique(labels)] = True
    survivors = np.flatnonzero(present[1:])
    lut = np.zeros(len(kept) + 1, np.int64)
    lut[survivors + 1] = np.arange(1, len(survivors) + 1)
    out = lut[labels].astype(label_dtype(len(survivors)))
    return out, candidates.select(np.asarray(kept, np.int64)[survivors])


def object_table(
    labels: np.ndarray,
    *,
    scores: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-object measurements of a 2-D label image.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` labels (0 = background).
    scores, classes : numpy.ndarray, optional
        Indexed by ``label - 1`` (as ``kept`` from :func:`maskrcnn_instances`).

    Returns
    -------
    dict of str to numpy.ndarray
        ``label``, ``area`` (pixels), ``bbox_y0``, ``bbox_x0``, ``bbox_y1``, ``bbox_x1``
        (half-open), plus ``score`` and ``class`` when given; one row per label present.

    Examples
    --------
    >>> t = object_table(np.array([[0, 1, 1], [2, 0, 0]]), scores=np.array([0.9, 0.7]))
    >>> t["label"].tolist(), t["area"].tolist(), t["score"].tolist()
    ([1, 2], [2, 1], [0.9, 0.7])
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CellsegError(f"object_table needs a 2-D label image, got shape {labels.shape}")
    props = regionprops_table(labels, properties=("label", "area", "bbox"))
    table: dict[str, np.ndarray] = {
        "label": np.asarray(props["label"], np.int64),
        "area": np.asarray(props["area"]).astype(np.int64),
    }
    for key, name in zip(
        ("bbox-0", "bbox-1", "bbox-2", "bbox-3"),
        ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"),
        strict=True,
    ):
        table[name] = np.asarray(props[key], np.int64)
    index = table["label"] - 1
    for name, values in (("score", scores), ("class", classes)):
        if values is None:
            continue
        values = np.asarray(values)
        if len(index) and index.max() >= len(values):
            raise CellsegError(
                f"{len(values)} {name}s given but the labels go up to {index.max() + 1}; "
                f"pass one {name} per label (label i -> {name}s[i - 1])"
            )
        table[name] = values[index]
    return table


def label_agreement(old: np.ndarray, new: np.ndarray) -> dict[str, float | int | bool]:
    """How far ``new`` labels are from ``old``: identical, counts, and per-object IoU.

    Each old object is paired with the new object covering most of it; ``min_iou`` and
    ``mean_iou`` are over the old objects (0 for an object with no partner), ``matched``
    counts pairs with IoU >= 0.5 and ``pixels_equal`` is the fraction of pixels whose
    foreground/background state agrees.
    """
    old, new = np.asarray(old, np.int64), np.asarray(new, np.int64)
    ious = []
    if old.max(initial=0) > 0:
        pairs = old.ravel() * (int(new.max(initial=0)) + 1) + new.ravel()
        counts = np.bincount(pairs)
        size_old = np.bincount(old.ravel())
        size_new = np.bincount(new.ravel())
        ids = np.flatnonzero(counts)
        a, b = np.divmod(ids, int(new.max(initial=0)) + 1)
        keep = (a > 0) & (b > 0)
        a, b, inter = a[keep], b[keep], counts[ids][keep]
        iou = inter / (size_old[a] + size_new[b] - inter)
        best = np.zeros(len(size_old))
        np.maximum.at(best, a, iou)
        ious = best[np.flatnonzero(size_old[1:]) + 1]
    ious = np.asarray(ious, float)
    return {
        "identical": bool(np.array_equal(old, new)),
        "objects_old": int(len(np.unique(old)) - (0 in old)),
        "objects_new": int(len(np.unique(new)) - (0 in new)),
        "matched": int((ious >= 0.5).sum()),
        "min_iou": float(ious.min()) if len(ious) else 1.0,
        "mean_iou": float(ious.mean()) if len(ious) else 1.0,
        "pixels_equal": float(((old > 0) == (new > 0)).mean()),
    }
