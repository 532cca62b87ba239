"""The work done for one file of a batch: read, segment, write.

:func:`process_file` is what a dask worker runs: the three steps in a row. The in-process
engine (:mod:`.local`) runs the same steps (:func:`~.reading.read_input`, :func:`segment`,
:func:`save_outputs`) in a pipeline so that reading and writing overlap compute. A worker
loads the model once per process (``cached_load`` keeps it). :func:`process_file` and
:func:`save_outputs` never raise for a bad file: each failure becomes a ``"failed"``
:class:`~.jobs.FileResult` with a one-line reason (:func:`segment` raises; its callers turn
the error into that result).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.batch.files import FileTask
from napari_cellseg.batch.jobs import BatchJob, FileResult, failure, file_params
from napari_cellseg.batch.large import is_large, remove_scratch, segment_large, write_label_output
from napari_cellseg.batch.reading import read_input
from napari_cellseg.errors import CellsegError, ImageWriteError
from napari_cellseg.events import Notice, Progress, drain
from napari_cellseg.io.images import ImageData
from napari_cellseg.params import PredictParams

__all__ = ["process_file", "save_outputs", "segment"]


def segment(
    image: ImageData,
    model: Any,
    params: PredictParams,
    *,
    should_stop: Callable[[], bool] | None = None,
    job: BatchJob | None = None,
    task: FileTask | None = None,
) -> Generator[Progress | Notice, None, Any]:
    """Run ``iter_predict`` on an image read from a file (its own axes unless given).

    With ``job`` and ``task``, a plane larger than ``job.blocks.block_pixels`` is segmented
    block by block into a scratch array beside the task's output (:mod:`.large`).
    """
    from napari_cellseg.inference import iter_predict
    from napari_cellseg.inference.joining import with_file_z_spacing

    run_params = with_file_z_spacing(
        file_params(params, image), image
    )  # stitching: the file's z step
    blocks = job.blocks if job is not None else None
    if job is not None and task is not None and is_large(image, job.blocks):
        return (
            yield from segment_large(
                image,
                model,
                run_params,
                task.labels,
                measure=bool(task.measurements),
                blocks=job.blocks,
                should_stop=should_stop,
            )
        )
    gen = iter_predict(
        image.data,
        model,
        run_params,
        blocks=blocks,
        should_stop=should_stop,
        pixel_size_um=image.pixel_size_um,
    )
    return (yield from gen)


def _empty_measurements(image: ImageData, axes: str) -> dict[str, np.ndarray]:
    """The measurement columns of an image without objects (a CSV with a header only)."""
    from napari_cellseg.batch.measure import measure_labels
    from napari_cellseg.inference.preprocess import iter_planes, label_axes

    if isinstance(image.data, np.ndarray):
        _, plane = next(iter_planes(image.data, axes))
    else:  # a lazily read single plane (zarr): never load it whole
        plane = image.data
    small = np.asarray(plane[:4, :4])
    plane_axes = "YX" + "".join(a for a in axes if a in "CS")
    table = measure_labels(np.zeros((4, 4), np.uint8), small, plane_axes, image.pixel_size_um)
    lead = {a.lower(): np.zeros(0, np.int64) for a in label_axes(axes)[:-2]}
    return {**lead, **table}


def _write_exports(task: FileTask, image: ImageData, prediction: Any) -> None:
    """The GeoJSON / ROI set exports of one file (mean intensities when the image is loaded)."""
    from napari_cellseg.inference.preprocess import label_axes
    from napari_cellseg.io.exports import export_labels, image_for_labels

    if not task.exports:
        return
    labels = np.asarray(prediction.labels)
    intensities = None
    if isinstance(image.data, np.ndarray):
        with contextlib.suppress(CellsegError):
            intensities = image_for_labels(image.data, prediction.axes, labels.shape, task.source)
    for fmt, path in task.exports:
        export_labels(
            path,
            labels,
            fmt,
            image=intensities,
            axes=label_axes(prediction.axes),
            pixel_size_um=image.pixel_size_um,
        )


def save_outputs(
    job: BatchJob,
    task: FileTask,
    image: ImageData,
    prediction: Any,
    timings: dict[str, float],
) -> FileResult:
    """Write the labels (and measurements) of one file; a failure leaves no output behind."""
    from napari_cellseg.batch.measure import measure_labels, write_table_csv
    from napari_cellseg.inference.preprocess import label_axes
    from napari_cellseg.io.images import write_labels

    t0 = time.perf_counter()
    try:
        labels_path = Path(task.labels)
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        labels = prediction.labels
        blockwise = getattr(prediction, "scratch", None) is not None
        if blockwise:
            write_label_output(
                labels_path, labels, prediction.n_objects, prediction.axes, image.pixel_size_um
            )
        elif labels_path.name.lower().endswith(".zarr"):
            from napari_cellseg.io.ome_zarr import write_labels_zarr

            axes = label_axes(prediction.axes)
            write_labels_zarr(labels_path, labels, None, axes, image.pixel_size_um)
        else:
            write_labels(
                labels_path,
                labels,
                pixel_size_um=image.pixel_size_um,
                axes=label_axes(prediction.axes),
            )
        if task.measurements:
            if blockwise:
                table = prediction.measurements or _empty_measurements(image, prediction.axes)
            else:
                table = measure_labels(labels, image.data, prediction.axes, image.pixel_size_um)
            try:
                write_table_csv(task.measurements, table)
            except OSError as exc:
                from napari_cellseg.io.files import write_problem

                raise ImageWriteError(task.measurements, write_problem(exc)) from exc
        _write_exports(task, image, prediction)
    except Exception as error:
        timings["write"] = time.perf_counter() - t0
        return failure(task, error, sum(timings.values()))
    finally:
        remove_scratch(prediction)
    timings["write"] = time.perf_counter() - t0
    return FileResult(
        file=task.source,
        rel=task.rel,
        status="done",
        objects=int(prediction.n_objects),
        seconds=sum(timings.values()),
        labels=task.labels,
        measurements=task.measurements,
        shape=tuple(int(s) for s in prediction.labels.shape),
        input_size=task.input_size,
        input_mtime_ns=task.input_mtime_ns,
        timings=dict(timings),
        diameter=getattr(prediction, "diameter", None),
        scale=float(getattr(prediction, "scale", 1.0)),
    )


def process_file(job: BatchJob, task: FileTask) -> FileResult:
    """Read, segment and write one file (the function dask workers run).

    Never raises for a bad file: every failure becomes a ``"failed"`` result whose reason
    is one line. The model is loaded once per process and cached.
    """
    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.model_runner import cached_load

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        if job.torch_threads:
            import torch

            if torch.get_num_threads() != job.torch_threads:
                torch.set_num_threads(job.torch_threads)
        params = job.predict_params()
        image = read_input(
            task.source, memmap_pixels=job.memmap_pixels, axes=params.axes, slide=job.slide
        )
        timings["read"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        model, _ = cached_load(job.weights, resolve_device(params.device))
        prediction = drain(segment(image, model, params, job=job, task=task))
        timings["segment"] = time.perf_counter() - t1
    except Exception as error:
        return failure(task, error, time.perf_counter() - t0)
    return save_outputs(job, task, image, prediction, timings)
