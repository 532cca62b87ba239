"""The picklable job spec and the per-file results of a batch (and their one-line failures).

The work done for one file, read, segment and write, is in :mod:`.file_steps`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_cellseg.batch.files import FileTask
from napari_cellseg.batch.reading import DEFAULT_MEMMAP_PIXELS
from napari_cellseg.errors import CellsegError, ImageReadError, ImageWriteError
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
