"""Network output to instance labels: watershed, NMS, size filters, hole filling, relabelling.

Everything here works on kept probabilities or detections only, so re-applying it with other
:class:`~napari_cellseg.params.PostprocessParams` is cheap (no model run). Each pass over the
plane runs once, vectorised (look-up tables and ``bincount`` rather than ``np.unique``,
``skimage`` relabelling or ``regionprops``); holes are filled once over the plane and then
only in the objects that can still have one. The labels are those of the earlier,
pass-by-pass version (``bench/_baseline.py``), as ``tests/inference/test_postprocess_speed.py``
checks on the sample images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.morphology import h_maxima

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.flooding import flood
from napari_cellseg.io.files import label_dtype
from napari_cellseg.params import PostprocessParams

_FULL = np.ones((3, 3), bool)  # 8-connectivity for markers and foreground components
_PEAK_HEIGHT = 1.0  # distance peaks must rise this many pixels above their saddles


def fill_plane_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)`` by one labelling of the background.

    A background pixel is a hole when its 4-connected background component does not touch
    the border.

    Examples
    --------
    >>> ring = np.pad(np.ones((3, 3), bool), 1)
    >>> ring[2, 2] = False
    >>> bool(fill_plane_holes(ring)[2, 2]), bool(fill_plane_holes(ring)[0, 0])
    (True, False)
    """
    background, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # the mask itself
    return ~outside[background]


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray | None:
    """Zero objects under ``min_size`` pixels in place; which ids were removed (None: none)."""
    if min_size <= 1 or labels.size == 0:
        return None
    counts = np.bincount(labels.ravel())
    small = (counts < min_size) & (counts > 0)
    small[0] = False
    if not small.any():
        return None
    labels[small[labels]] = 0
    return small


def _boxes(slices: list) -> np.ndarray:
    """(N, 4) ``y0, x0, y1, x1`` of ``find_objects`` slices (empty boxes for missing ids)."""
    rows = [(s[0].start, s[1].start, s[0].stop, s[1].stop) if s else (0, 0, 0, 0) for s in slices]
    return np.array(rows, np.int64).reshape(-1, 4)


def _fill_object_holes(labels: np.ndarray, slices: list, removed: np.ndarray | None) -> None:
    """Fill each object's holes in place, object after object (as ``labels.editing``).

    ``slices``: ``find_objects`` of the labels before the size filter; ``removed``: the ids
    it removed (by id), or None to fill every object. With ``removed``, only objects whose
    box meets a removed object's box are filled: the foreground was hole-filled before the
    watershed, which floods every enclosed pixel, so the removed objects' pixels are the only
    background an object can enclose.
    """
    boxes = _boxes(slices)
    alive = boxes[:, 2] > boxes[:, 0]
    if removed is not None:
        gone = np.flatnonzero(removed[1 : len(boxes) + 1])
        alive &= ~removed[1 : len(boxes) + 1]
        meets = np.zeros(len(boxes), bool)
        for start in range(0, len(gone), 256):
            r = boxes[gone[start : start + 256]]
            meets |= (
                (boxes[:, None, 0] < r[None, :, 2])
                & (boxes[:, None, 2] > r[None, :, 0])
                & (boxes[:, None, 1] < r[None, :, 3])
                & (boxes[:, None, 3] > r[None, :, 1])
            ).any(axis=1)
        alive &= meets
    for index in np.flatnonzero(alive):
        object_id = index + 1
        crop = labels[slices[index]]
        obj = crop == object_id
        holes = ndi.binary_fill_holes(obj) & ~obj & (crop == 0)
        crop[holes] = object_id


def _sequential(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in their order, uint16 (uint32 above 65535 objects)."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(len(present), np.int64)
    lut[present] = np.arange(1, int(present.sum()) + 1)
    return lut.astype(label_dtype(int(present.sum())))[labels]


def _finish(labels: np.ndarray, params: PostprocessParams) -> np.ndarray:
    """Size filter and hole filling in place, then labels 1..N as uint16 (uint32 if needed)."""
    slices = ndi.find_objects(labels) if params.fill_holes else []
    removed = _remove_small(labels, params.min_size)
    if params.fill_holes and removed is not None:
        _fill_object_holes(labels, slices, removed)
    return _sequential(labels)


def _channel(probs: np.ndarray, outputs: list[str], name: str) -> np.ndarray | None:
    return probs[outputs.index(name)] if name in outputs else None


def object_probability(
    probabilities: np.ndarray | None, outputs: Sequence[str], *, interior_first: bool = False
) -> np.ndarray | None:
    """P(object) from U-Net maps ``(..., C, Y, X)``, as ``(..., Y, X)`` float32.

    The ``foreground`` channel, else one minus ``background`` (equal for a softmax over
    both); with ``interior_first`` the ``interior`` channel before either (the size
    estimate's confidence: the objects' cores, not their rims). ``None`` when the maps are
    ``None`` or no such channel exists.

    >>> probs = np.array([[[0.25]], [[0.5]], [[0.25]]])
    >>> float(object_probability(probs, ["background", "interior", "boundary"])[0, 0])
    0.75
    >>> float(object_probability(probs, ["background", "interior", "boundary"],
    ...                          interior_first=True)[0, 0])
    0.5
    >>> object_probability(probs, ["a", "b", "c"]) is None
    True
    """
    if probabilities is None:
        return None
    p = np.asarray(probabilities, np.float32)
    outputs = list(outputs)
    if interior_first and "interior" in outputs:
        return p[..., outputs.index("interior"), :, :]
    if "foreground" in outputs:
        return p[..., outputs.index("foreground"), :, :]
    if "background" in outputs:
        return 1.0 - p[..., outputs.index("background"), :, :]
    return None


def _foreground(fg_prob: np.ndarray, params: PostprocessParams) -> np.ndarray:
    foreground = fg_prob > params.prob_threshold
    if params.fill_holes:  # before splitting too: a hole can sit between several objects
        foreground = fill_plane_holes(foreground)
    return foreground


def _add_fallback_markers(
    markers: np.ndarray, foreground: np.ndarray, components: np.ndarray | None = None
) -> np.ndarray:
    """Give each foreground component without any marker a marker of its own (itself).

    ``components`` are the foreground's 8-connected components when already labelled.
    """
    if components is None:
        components, n = ndi.label(foreground, structure=_FULL)
    else:
        n = int(components.max()) if components.size else 0
    if n == 0:
        return markers
    has_marker = np.zeros(n + 1, bool)
    has_marker[components[markers > 0]] = True
    missing = ~has_marker
    missing[0] = False
    if missing.any():
        top = markers.max()
        lut = np.zeros(n + 1, markers.dtype)
        lut[missing] = np.arange(1, int(missing.sum()) + 1) + top
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
        components = None
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
    markers = _add_fallback_markers(markers, foreground, components)
    labels = flood(surface, markers, foreground)
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
        ``kept.scores[labels - 1]`` is each pixel's score (see
        :func:`~napari_cellseg.inference.object_table.object_table`).
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
    slices = ndi.find_objects(labels) if params.fill_holes else []
    _remove_small(labels, params.min_size)
    if params.fill_holes:  # masks may have holes of their own: every object
        _fill_object_holes(labels, slices, None)
    present = np.bincount(labels.ravel(), minlength=len(kept) + 1) > 0
    survivors = np.flatnonzero(present[1:])
    lut = np.zeros(len(kept) + 1, np.int64)
    lut[survivors + 1] = np.arange(1, len(survivors) + 1)
    out = lut[labels].astype(label_dtype(len(survivors)))
    return out, candidates.select(np.asarray(kept, np.int64)[survivors])
