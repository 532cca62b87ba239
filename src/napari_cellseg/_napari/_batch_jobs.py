"""The Batch dialog's work, run in napari workers: the batch itself and reading a result.

No Qt and no napari here: plain functions over files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg._napari._sample_data import contrast_limits, display_array
from napari_cellseg._napari._threads import gui_torch_threads
from napari_cellseg.batch import FileResult, iter_batch
from napari_cellseg.errors import CellsegError

__all__ = ["BatchFailed", "patterns", "read_result", "run_batch_job"]


class BatchFailed(Exception):
    """An unexpected error, re-raised as such: superqt's worker silently drops a RuntimeError
    (without ``errored`` or ``finished``), which would leave the dock "running" forever."""


def run_batch_job(**kwargs: Any) -> Any:
    """``iter_batch`` leaving the viewer a core, every unexpected error a one-line message."""
    try:
        with gui_torch_threads():
            return (yield from iter_batch(**kwargs))
    except CellsegError:
        raise
    except Exception as exc:
        raise BatchFailed(f"unexpected {type(exc).__name__}: {exc}") from exc


def patterns(text: str) -> list[str]:
    """Glob patterns typed as ``*.tif, *.png`` (commas or semicolons)."""
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


def read_result(result: FileResult) -> tuple[Any, dict, np.ndarray, dict]:
    """Read one processed image and its labels for display (runs in a worker)."""
    from napari_cellseg.io.images import read_image, read_labels

    image = read_image(result.file)
    data, axes = np.asarray(image.data), image.axes
    if "C" in axes[:-1]:  # channels last, as display_array expects
        data = np.moveaxis(data, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    array, rgb = display_array(data, axes)
    stem = Path(result.file).stem
    image_kwargs: dict[str, Any] = {"name": stem, "rgb": rgb}
    if not rgb:
        image_kwargs["contrast_limits"] = contrast_limits(array)
    labels_kwargs: dict[str, Any] = {"name": f"{stem} · labels", "opacity": 0.5}
    if image.pixel_size_um is not None and array.ndim - int(rgb) == 2:
        image_kwargs["scale"] = labels_kwargs["scale"] = tuple(image.pixel_size_um)
    return array, image_kwargs, np.asarray(read_labels(result.labels)), labels_kwargs
