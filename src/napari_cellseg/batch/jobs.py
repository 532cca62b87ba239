"""The picklable job spec, per-file results, and the work done for one file.

:func:`process_file` is what a dask worker runs: read, segment, write. The in-process engine
runs the same three steps (:func:`read_input`, :func:`segment`, :func:`save_outputs`) in a
pipeline so that reading and writing overlap compute. A worker loads the model once per
process (``cached_load`` keeps it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.batch.files import FileTask
from napari_cellseg.batch.large import (
    is_large,
    remove_scratch,
    segment_large,
    write_label_output,
)
from napari_cellseg.batch.reading import DEFAULT_MEMMAP_PIXELS, read_input
from napari_cellseg.errors import CellsegError, ImageReadError, ImageWriteError
from napari_cellseg.events import Notice, Progress, drain
from napari_cellseg.io.images import ImageData
from napari_cellseg.io.slides import SlideOptions
from napari_cellseg.params import BlockOptions, PostprocessParams, PredictParams

__all__ = [
    "BatchJob",
    "BatchSummary",
    "FileResult",
    "describe_error",
    "estimated_sizes",
    "failure",
    "file_params",
    "params_from_dict",
    "process_file",
    "save_outputs",
    "segment",
]


def params_from_dict(data: dict[str, Any]) -> PredictParams:
    """Rebuild :class:`PredictParams` from :meth:`PredictParams.to_dict` output."""
    values = dict(data)
    post_values = values.pop("post", None)
    post = None if post_values is None else PostprocessParams(**post_values)
    if values.get("channels") is not None:
        values["channels"] = tuple(values["channels"])
    return PredictParams(**values, post=post)


@dataclass(frozen=True)
class BatchJob:
    """Everything a worker needs besides the file: small, plain and picklable.

    Attributes
    ----------
    weights : str
        Absolute path of the weight file (must be readable by every worker).
    weights_sha256 : str
        Its checksum, recorded in the manifest.
    params : dict
        ``PredictParams.to_dict()``.
    out : str
        The output folder.
    measure : bool
        Also write a measurements CSV per image.
    recipe_hash : str
        Hash of the weights and the result-changing parameters.
    memmap_pixels : int
        Uncompressed TIFFs above this many pixels are memory-mapped.
    torch_threads : int or None
        CPU threads per worker for torch (``None``: leave torch's setting).
    blocks : BlockOptions
        Planes with more than ``block_pixels`` pixels are segmented in blocks of
        ``block_size`` with a ``halo`` margin, into an on-disk array (bounded memory).
    slide : SlideOptions
        The level of whole-slide pyramids and OME-Zarr stores to segment.
    """

    weights: str
    weights_sha256: str
    params: dict[str, Any]
    out: str
    measure: bool = False
    recipe_hash: str = ""
    memmap_pixels: int = DEFAULT_MEMMAP_PIXELS
    torch_threads: int | None = None
    blocks: BlockOptions = field(default_factory=BlockOptions)
    slide: SlideOptions = field(default_factory=SlideOptions)

    def predict_params(self) -> PredictParams:
        """The prediction parameters."""
        return params_from_dict(self.params)


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file.

    ``status`` is ``"done"`` (segmented and written now), ``"skipped"`` (a valid output of the
    same recipe already existed) or ``"failed"`` (``reason`` says why, in one line).
    """

    file: str
    rel: str
    status: str
    objects: int = 0
    seconds: float = 0.0
    reason: str = ""
    labels: str | None = None
    measurements: str | None = None
    shape: tuple[int, ...] | None = None
    input_size: int = -1
    input_mtime_ns: int = -1
    timings: dict[str, float] = field(default_factory=dict)
    diameter: float | None = None
    scale: float = 1.0

    def message(self) -> str:
        """One line for a log: ``file: reason`` for failures."""
        if self.status == "failed":
            return f"{self.file}: {self.reason}"
        size = "" if self.diameter is None else f", diameter {self.diameter:.0f} px"
        return f"{self.file}: {self.status}, {self.objects} objects{size}, {self.seconds:.2f} s"

    def entry(self) -> dict[str, Any]:
        """The manifest entry (``RunState`` stores the output paths relative to the folder)."""
        return {
            "source": self.file,
            "status": "done" if self.status == "skipped" else self.status,
            "objects": self.objects,
            "seconds": round(self.seconds, 4),
            "reason": self.reason,
            "labels": self.labels,
            "measurements": self.measurements,
            "shape": list(self.shape) if self.shape is not None else None,
            "input_size": self.input_size,
            "input_mtime_ns": self.input_mtime_ns,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "diameter": None if self.diameter is None else round(float(self.diameter), 2),
            "scale": round(float(self.scale), 4),
        }


@dataclass(frozen=True)
class BatchSummary:
    """The end of a batch run (what :func:`iter_batch` returns).

    ``done`` files were segmented by this run, ``skipped`` ones already had valid outputs of
    the same recipe, ``failed`` ones are listed in ``errors`` as ``(file, reason)``.
    ``objects`` counts the objects of all outputs of this input set (done and skipped).
    ``cancelled`` is True when the run was stopped before every file was handled.
    """

    done: int
    skipped: int
    failed: int
    objects: int
    seconds: float
    errors: tuple[tuple[str, str], ...]
    out: str
    cancelled: bool = False

    @property
    def manifest(self) -> str:
        """Path of the run manifest."""
        return str(Path(self.out) / "batch_manifest.json")

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        head = "stopped" if self.cancelled else "finished"
        text = (
            f"batch {head}: {self.done} done, {self.skipped} skipped, {self.failed} failed, "
            f"{self.objects} objects in {self.seconds:.1f} s -> {self.out}"
        )
        if self.failed:
            text += f" (reasons in {Path(self.out) / 'errors.csv'})"
        return text


def estimated_sizes(diameters: Sequence[float]) -> tuple[float, float, float] | None:
    """Median, smallest and largest of the object diameters a batch estimated image by image
    (None for fewer than 3). The median is the value to give a folder of alike images: it
    skips the estimate, about 80 % of each image's time with ``auto`` on 20 DSB images
    (session 24, ``docs/benchmarks.md``).

    >>> estimated_sizes([31.0, 20.0, 24.4])
    (24.4, 20.0, 31.0)
    >>> estimated_sizes([20.0, 24.0]) is None
    True
    """
    if len(diameters) < 3:
        return None
    return float(statistics.median(diameters)), float(min(diameters)), float(max(diameters))


def describe_error(error: BaseException, source: str | Path | None = None) -> str:
    """One line saying what went wrong with a file (without repeating the input's path)."""
    if isinstance(error, ImageReadError | ImageWriteError):
        if source is not None and Path(error.path) == Path(source):
            return error.problem
        verb = "could not write" if isinstance(error, ImageWriteError) else "could not read"
        return f"{verb} {error.path}: {error.problem}"
    if isinstance(error, CellsegError):
        return str(error)
    if isinstance(error, MemoryError):
        return "not enough memory to segment it; use smaller tiles or split the image"
    text = str(error).strip().splitlines()
    return f"unexpected {type(error).__name__}: {text[0] if text else 'no message'}"


def failure(task: FileTask, error: BaseException | str, seconds: float = 0.0) -> FileResult:
    """A failed result for `task` (its outputs, if any were written, are removed)."""
    for target in (task.labels, task.measurements, *(path for _, path in task.exports)):
        if target and os.path.isdir(target):  # OME-Zarr labels
            shutil.rmtree(target, ignore_errors=True)
        elif target:
            with contextlib.suppress(OSError):
                os.unlink(target)
    reason = error if isinstance(error, str) else describe_error(error, task.source)
    return FileResult(
        file=task.source,
        rel=task.rel,
        status="failed",
        seconds=seconds,
        reason=reason,
        input_size=task.input_size,
        input_mtime_ns=task.input_mtime_ns,
    )


def file_params(params: PredictParams, image: ImageData) -> PredictParams:
    """``params`` with the file's own axes when none were given."""
    return params if params.axes else replace(params, axes=image.axes)


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
