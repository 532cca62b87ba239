"""The Mask R-CNN family's inference part: detections per tile, fused and merged, then painted.

Used by :mod:`napari_cellseg.inference.planes` through the family table
(:func:`napari_cellseg.families.family_part`). The raw output of a plane is its
:class:`~napari_cellseg.inference.detections.Detections` in image coordinates, kept down to
:data:`MASKRCNN_KEEP_SCORE` (down to :func:`mask_floor` without test-time augmentation) so
that :func:`to_instances` can re-apply other thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from napari_cellseg.events import Progress
from napari_cellseg.inference.detections import Detections
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import maskrcnn_instances
from napari_cellseg.inference.tile_merge import merge_tile_detections
from napari_cellseg.inference.tiling import Tile
from napari_cellseg.inference.tta import fuse_copies
from napari_cellseg.models.card import ModelCard
from napari_cellseg.params import PostprocessParams, PredictParams

#: Mask R-CNN keeps candidates down to this score so thresholds can be re-applied later.
MASKRCNN_KEEP_SCORE = 0.05
#: Without test-time augmentation, only candidates scored at least this (or half the run's
#: score threshold, when lower) get a mask: the mask head is most of a CPU pass, and
#: candidates below it could only show when the threshold is re-applied lower than that.
MASKRCNN_MASK_SCORE = 0.15


def mask_floor(params: PredictParams) -> float:
    """Lowest score a candidate needs to be kept (and masked) in a run with ``params``.

    ``min(MASKRCNN_MASK_SCORE, score_threshold / 2)``: every threshold down to half the
    run's keeps its objects (and uncertainty's "possible missed objects", which go down to
    half the threshold, stay complete). With test-time augmentation nothing is left out:
    a copy's low score still counts in an object's fused score.

    Examples
    --------
    >>> mask_floor(PredictParams().with_post(score_threshold=0.6))
    0.15
    >>> mask_floor(PredictParams().with_post(score_threshold=0.2))
    0.1
    >>> mask_floor(PredictParams(tta=4).with_post(score_threshold=0.6))
    0.0
    """
    if params.tta > 1:
        return 0.0
    return min(MASKRCNN_MASK_SCORE, params.post.score_threshold / 2)


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Keep every detection scored :data:`MASKRCNN_KEEP_SCORE` or more."""
    model.roi_heads.score_thresh = MASKRCNN_KEEP_SCORE
    return model


def tile_geometry(card: ModelCard, tile_size: int, overlap: int) -> tuple[int, int]:
    """The tile size asked for, overlapping by a quarter at most.

    torchvision rescales each input so that its short side is ``min_size``; the runner
    (:meth:`~napari_cellseg.inference.model_runner.ModelRunner.maskrcnn_detections`) lifts
    ``min_size`` to the tile's short side, so tiles larger than ``min_size`` are never
    shrunk: objects stay at the scale the model was trained at, with fewer tiles (and
    fewer seams) than tiles of ``min_size`` would need. Smaller tiles are enlarged to
    ``min_size`` as torchvision does.
    """
    return tile_size, min(overlap, tile_size // 4)


def run_tiles(
    runner: Any,
    x: np.ndarray,
    batches: list[list[Tile]],
    overlap: int,
    params: PredictParams,
    checkpoint: Callable[[Any], Any],
    message: str,
) -> Generator[Any, None, Detections]:
    """Detections of every tile (test-time augmented copies fused), merged over the plane.

    Parameters are those of :func:`napari_cellseg.inference.unet_strategy.run_tiles`; the
    network runs through
    :meth:`~napari_cellseg.inference.model_runner.ModelRunner.maskrcnn_copy`.

    Returns
    -------
    Detections
        The plane's detections in image coordinates.
    """
    height, width = x.shape[-2:]
    parts: list[tuple[Tile, Detections]] = []
    total_copies = len(batches) * params.tta
    runner.mask_min_score = mask_floor(params)
    shared = _shared_regions([tile for batch in batches for tile in batch])
    for done, batch in enumerate(batches, start=1):
        crops = [x[:, t.y0 : t.y1, t.x0 : t.x1] for t in batch]
        runner.mask_regions = [shared[t] for t in batch]
        copies = [runner.maskrcnn_copy(crops, 0)]
        for index in range(1, params.tta):  # test-time augmentation, copy by copy
            copies_done = (done - 1) * params.tta + index
            yield checkpoint(Progress("tiles", copies_done, total_copies, message))
            copies.append(runner.maskrcnn_copy(crops, index))
        for k, tile in enumerate(batch):
            det = fuse_copies([c[k] for c in copies], mask_threshold=params.post.mask_threshold)
            parts.append((tile, det.shifted(tile.y0, tile.x0)))
        yield checkpoint(Progress("tiles", done * params.tta, total_copies, message))
    runner.mask_regions = None
    if len(parts) == 1:
        return parts[0][1]
    merged = merge_tile_detections(
        parts, (height, width), mask_threshold=params.post.mask_threshold
    )
    # candidates under the floor were only kept where tiles overlap, for the stitching
    return merged.select(merged.scores >= runner.mask_min_score)


def _shared_regions(tiles: list[Tile]) -> dict[Tile, list[tuple[int, int, int, int]]]:
    """Per tile, where it overlaps another tile (tile coordinates): candidates meeting these
    take part in stitching (:func:`merge_tile_detections`), so they keep their masks."""
    regions: dict[Tile, list[tuple[int, int, int, int]]] = {t: [] for t in tiles}
    for t in tiles:
        for u in tiles:
            y0, x0 = max(t.y0, u.y0), max(t.x0, u.x0)
            y1, x1 = min(t.y1, u.y1), min(t.x1, u.x1)
            if u is not t and y0 < y1 and x0 < x1:
                regions[t].append((y0 - t.y0, x0 - t.x0, y1 - t.y0, x1 - t.x0))
    return regions


def to_instances(
    card: ModelCard, output: Detections, shape: tuple[int, int], post: PostprocessParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels of ``shape`` and object table (with scores and classes) of a plane's detections."""
    labels, kept = maskrcnn_instances(output, tuple(shape), post)
    return labels, object_table(labels, scores=kept.scores, classes=kept.classes)


def output_shape(output: Detections, labels: np.ndarray) -> tuple[int, int]:
    """The ``(Y, X)`` size of a plane, read from its labels (detections do not know it)."""
    return tuple(labels.shape[-2:])
