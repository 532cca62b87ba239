"""What the Segment tab's workers run (in a worker thread): predict, or re-apply thresholds.

Expected problems arrive as :class:`CellsegError` (shown as a notification); anything else
is logged and wrapped in :class:`JobError` with a one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

from napari_cellseg._napari._threads import gui_torch_threads
from napari_cellseg.core.config import PostprocessParams, PredictParams
from napari_cellseg.core.errors import CellsegError
from napari_cellseg.core.events import CancelledError, Notice, Progress
from napari_cellseg.core.inference import Prediction, iter_predict, reapply
from napari_cellseg.core.predict_blocks import (
    DEFAULT_BLOCK_PIXELS,
    is_large_plane,
    iter_predict_large,
)
from napari_cellseg.core.preprocess import guess_axes
from napari_cellseg.models.weights import LoadedModel

log = logging.getLogger(__name__)


class JobError(Exception):
    """An unexpected failure inside a worker (re-raised as a plain Exception on purpose:
    superqt swallows ``RuntimeError`` from generators without emitting ``finished``)."""


def predict_job(
    data: Any, weights: Path | LoadedModel, params: PredictParams
) -> Generator[Progress | Notice, None, Prediction]:
    """Forward ``iter_predict``'s events and return its Prediction (runs in the worker)."""
    try:
        with gui_torch_threads():
            if in_blocks(data, params):  # block by block: memory does not grow with the image
                return (yield from iter_predict_large(data, weights, params))
            for item in iter_predict(data, weights, params):
                if isinstance(item, Prediction):
                    return item
                yield item
    except (CellsegError, CancelledError):
        raise
    except Exception as exc:
        log.exception("segmentation failed")
        raise JobError(f"segmentation failed ({type(exc).__name__}: {exc})") from exc
    raise JobError("segmentation ended without a result")


def in_blocks(data: Any, params: PredictParams) -> bool:
    """A single plane (or current plane) above ``DEFAULT_BLOCK_PIXELS``: segment in blocks."""
    axes = params.axes or guess_axes(data.shape)
    single = all(a not in "TZ" for a in axes)
    return single and is_large_plane(data.shape, axes, DEFAULT_BLOCK_PIXELS)


def reapply_job(prediction: Prediction, post: PostprocessParams) -> Prediction:
    try:
        return reapply(prediction, post)
    except CellsegError:
        raise
    except Exception as exc:
        log.exception("re-applying the thresholds failed")
        raise JobError(f"re-applying the thresholds failed ({type(exc).__name__}: {exc})") from exc
