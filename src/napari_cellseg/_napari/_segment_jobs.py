"""What the Segment tab's workers run (in a worker thread): predict, or re-apply thresholds.

Expected problems arrive as :class:`CellsegError` (shown as a notification); anything else
is logged and wrapped in :class:`JobError` with a one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

from napari_cellseg._napari._threads import background_priority, gui_torch_threads
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress
from napari_cellseg.inference import Prediction, iter_predict, reapply
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PostprocessParams, PredictParams

log = logging.getLogger(__name__)


class JobError(Exception):
    """An unexpected failure inside a worker (re-raised as a plain Exception on purpose:
    superqt swallows ``RuntimeError`` from generators without emitting ``finished``)."""


def predict_job(
    data: Any, weights: Path | LoadedModel, params: PredictParams
) -> Generator[Progress | Notice, None, Prediction]:
    """Forward ``iter_predict``'s events and return its Prediction (in the worker)."""
    try:
        with gui_torch_threads():
            # a large single plane goes block by block: memory does not grow with the image
            prediction = yield from iter_predict(data, weights, params)
    except (CellsegError, CancelledError):
        raise
    except Exception as exc:
        log.exception("segmentation failed")
        raise JobError(f"segmentation failed ({type(exc).__name__}: {exc})") from exc
    if prediction is None:
        raise JobError("segmentation ended without a result")
    return prediction


def reapply_job(prediction: Prediction, post: PostprocessParams) -> Prediction:
    try:
        with background_priority():
            return reapply(prediction, post)
    except CellsegError:
        raise
    except Exception as exc:
        log.exception("re-applying the thresholds failed")
        raise JobError(f"re-applying the thresholds failed ({type(exc).__name__}: {exc})") from exc
