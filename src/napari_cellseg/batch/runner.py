"""``iter_batch`` / ``run_batch``: segment every image of a folder, resumably.

In process (``scheduler="none"``) the work is a three-stage pipeline: read ahead, segment,
write behind (:mod:`napari_cellseg.batch.local`). With a dask scheduler each file is a task
(see :mod:`napari_cellseg.batch.scheduler`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from napari_cellseg.batch.files import (
    LABELS_NOTE,
    LABELS_SUFFIX,
    ZARR_LABELS_SUFFIX,
    InputSpec,
    find_inputs,
    plan_tasks,
)
from napari_cellseg.batch.jobs import (
    BatchJob,
    BatchSummary,
    FileResult,
)
from napari_cellseg.batch.local import iter_local
from napari_cellseg.batch.manifest import RunState
from napari_cellseg.batch.reading import DEFAULT_MEMMAP_PIXELS
from napari_cellseg.batch.recipe import BATCH_LIBRARIES, make_recipe
from napari_cellseg.batch.repeats import repeated_warning, repeats_summary
from napari_cellseg.batch.scheduler import check_scheduler, default_workers, iter_dask
from napari_cellseg.errors import CellsegError, WeightFileError
from napari_cellseg.events import CancelledError, Notice, Progress, drain
from napari_cellseg.io.exports import parse_export_formats
from napari_cellseg.io.files import sha256_path
from napari_cellseg.io.slides import SlideOptions
from napari_cellseg.models.card import library_versions
from napari_cellseg.params import BlockOptions, PredictParams

__all__ = ["BatchEvent", "iter_batch", "run_batch"]

BatchEvent = Progress | Notice | FileResult


def _check_weights(weights: Path, params: PredictParams, scheduler: str) -> Any:
    """Load the weights once (refusing bad files before any output); the model for "none"."""
    import torch

    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.model_runner import cached_load
    from napari_cellseg.inference.onnx_known import load

    if not weights.exists():
        raise WeightFileError(weights, "weight file not found; check the path")
    if scheduler == "none":
        return cached_load(weights, resolve_device(params.device))[0]
    if scheduler == "local":  # remote workers may have devices this machine lacks
        resolve_device(params.device)
    # every worker loads it again, once; a file whose export is known here is only hashed
    load(weights, torch.device("cpu"))
    return None


def iter_batch(
    inputs: InputSpec,
    out: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    params: PredictParams | None = None,
    *,
    recursive: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    measure: bool = False,
    exports: Sequence[str] = (),
    scheduler: str = "none",
    workers: int | None = None,
    overwrite: bool = False,
    prefetch: int = 2,
    memmap_pixels: int = DEFAULT_MEMMAP_PIXELS,
    blocks: BlockOptions | None = None,
    slide: SlideOptions | None = None,
    labels_format: str = "tiff",
    should_stop: Callable[[], bool] | None = None,
) -> Generator[BatchEvent, None, BatchSummary]:
    """Segment a folder (or a list) of images into label TIFFs, yielding progress.

    Parameters
    ----------
    inputs : path or sequence of paths
        A folder, or image files.
    out : path
        Output folder: ``<out>/<relative folder>/<stem>_labels.tif``, the manifest
        ``batch_manifest.json``, ``errors.csv`` and (with `measure`) the measurement CSVs.
        It may hold only one recipe (weights and result-changing parameters).
    weights : path
        Weight file (or smp folder); bad files are refused before anything is written.
    params : PredictParams, optional
        Device, tiling, channels, post-processing; axes default to each file's own.
    recursive, include, exclude
        How to walk a folder (see :func:`~napari_cellseg.batch.files.find_inputs`).
    measure : bool
        Write ``<stem>_measurements.csv`` per image and a combined ``measurements.csv``.
    exports : sequence of str
        Also write ``geojson`` (``<stem>_labels.geojson``, QuPath) and/or ``roi``
        (``<stem>_rois.zip``, Fiji) beside each label file. Like measurements, exports are
        not part of the recipe: a rerun that asks for an export a file lacks redoes it.
    scheduler : str
        ``"none"`` (in this process), ``"local"`` (a LocalCluster of `workers` processes)
        or a dask scheduler address ``"tcp://host:port"``.
    workers : int, optional
        Local worker processes (default: CPU count, at most 4).
    overwrite : bool
        Allow an output folder holding another recipe's results (they are replaced).
    prefetch : int
        Images read ahead in process (memory: about ``prefetch + 4`` images).
    memmap_pixels : int
        Uncompressed TIFFs with more pixels are memory-mapped instead of loaded.
    blocks : BlockOptions, optional
        Planes with more than ``block_pixels`` pixels are segmented in blocks of
        ``block_size`` plus a ``halo`` margin, into an on-disk array, so memory stays
        bounded whatever the image size; objects larger than the halo may be cut.
        The defaults when omitted.
    slide : SlideOptions, optional
        The level of whole-slide pyramids and OME-Zarr stores to segment (level 0 when
        omitted); see :mod:`napari_cellseg.io.slides`.
    labels_format : str
        ``"tiff"`` (``<stem>_labels.tif``) or ``"zarr"`` (``<stem>_labels.ome.zarr``,
        OME-Zarr with a label pyramid).
    should_stop : callable, optional
        Polled between files and tiles; True stops cleanly.

    Yields
    ------
    Progress, Notice, FileResult

    Returns
    -------
    BatchSummary

    Raises
    ------
    CellsegError
        For user errors before any work: no images, bad weights or parameters, an output
        folder holding another recipe or in use by another run.
    """
    start = time.perf_counter()
    stop = should_stop or (lambda: False)
    params = params or PredictParams()
    scheduler = check_scheduler(scheduler, workers)
    if not 1 <= int(prefetch) <= 64:
        raise CellsegError(f"prefetch must be between 1 and 64 images, got {prefetch}")
    blocks = blocks or BlockOptions()  # its values were checked when it was made
    out_path = Path(out).absolute()
    if out_path.exists() and not out_path.is_dir():
        raise CellsegError(f"{out_path}: the output path is a file; choose a folder")
    root, files, rejected = find_inputs(
        inputs, out_path, recursive=recursive, include=include, exclude=exclude
    )
    from napari_cellseg.models.weights import weights_root

    weights_path = weights_root(Path(weights).absolute())  # a package: its folder, all hashed
    model = _check_weights(weights_path, params, scheduler)
    if params.post is None:  # the model's own thresholds, written into the manifest
        from napari_cellseg.models import read_card

        params = params.resolved(read_card(weights_path).post_params())
    exports = parse_export_formats(exports)
    n_workers = int(workers or default_workers())
    slide = slide or SlideOptions()
    if labels_format not in ("tiff", "zarr"):
        raise CellsegError(f"labels format {labels_format!r}: choose tiff or zarr")
    recipe_params = params.to_dict()
    if slide != SlideOptions():  # only when asked: folders written before resume
        recipe_params["slide"] = slide.to_dict()
    recipe = make_recipe(sha256_path(weights_path), recipe_params)
    info = {
        "input": str(root),
        "output": str(out_path),
        "weights": str(weights_path),
        "parameters": params.to_dict(),
        "measure": measure,
        "exports": list(exports),
        "large_images": {
            "block_pixels": blocks.block_pixels,
            "block_size": blocks.block_size,
            "halo": blocks.halo,
        },
        "scheduler": scheduler,
        "workers": n_workers if scheduler != "none" else 1,
        "libraries": library_versions(BATCH_LIBRARIES, missing="not installed"),
    }
    state = RunState(out_path, recipe, info, overwrite=overwrite)
    job = BatchJob(
        weights=str(weights_path),
        weights_sha256=recipe["weights_sha256"],
        params=params.to_dict(),
        out=str(out_path),
        measure=measure,
        recipe_hash=state.hash,
        memmap_pixels=int(memmap_pixels),
        blocks=blocks,
        slide=slide,
        torch_threads=max(1, (os.cpu_count() or 1) // n_workers) if scheduler == "local" else None,
    )
    suffix = ZARR_LABELS_SUFFIX if labels_format == "zarr" else LABELS_SUFFIX
    tasks = plan_tasks(files, out_path, measure=measure, exports=exports, labels_suffix=suffix)
    left_out = [path for path, reason in rejected if reason == LABELS_NOTE]
    rejected = [(path, reason) for path, reason in rejected if reason != LABELS_NOTE]
    state.open()
    total = len(tasks) + len(rejected)
    tally = {"done": 0, "skipped": 0, "failed": 0, "objects": 0}
    errors: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(result: FileResult) -> None:
        state.record(result)
        with lock:
            tally[result.status] += 1
            if result.status in ("done", "skipped"):
                tally["objects"] += result.objects
            if result.status == "failed":
                errors.append((result.file, result.reason))

    def progress(result: FileResult) -> Progress:
        finished = tally["done"] + tally["skipped"] + tally["failed"]
        return Progress("files", finished, total, f"{result.rel}: {result.status}")

    cancelled, engine, close_errors = False, None, []
    warned: dict[str, list[str]] = {}  # a file's warning text -> the files that had it
    try:
        if state.cleaned:
            yield Notice(f"removed {state.cleaned} temporary file(s) left by an interrupted run")
        if left_out:
            names = ", ".join(p.name for p in left_out[:3]) + (", …" if len(left_out) > 3 else "")
            yield Notice(
                f"{len(left_out)} file(s) named like label images cellseg wrote (*_labels.tif: "
                f"{names}) were not segmented; select them with --include to segment them",
                level="warning",
            )
        for path, reason in rejected:
            result = FileResult(file=str(path), rel=str(path), status="failed", reason=reason)
            record(result)
            yield result
        todo, skipped = state.plan_resume(tasks)
        for result in skipped:
            record(result)
            yield result
        yield Progress("files", len(skipped) + len(rejected), total, "starting")
        if scheduler == "none":
            engine = iter_local(job, todo, model, record, prefetch=prefetch, should_stop=stop)
        else:
            engine = iter_dask(
                job, todo, record, scheduler=scheduler, workers=n_workers, should_stop=stop
            )
        for event in engine:
            if isinstance(event, Notice) and repeated_warning(event, warned):
                continue
            yield event
            if isinstance(event, FileResult):
                yield progress(event)
        yield from repeats_summary(warned)
    except CancelledError:
        cancelled = True
    finally:
        if engine is not None:
            engine.close()  # on an early close, finishes the writes already queued
        done = not cancelled and sum(tally[k] for k in ("done", "skipped", "failed")) == total
        state.close(
            "complete" if done else "stopped",
            [t.rel for t in tasks],
            errors,
            measure=measure,
            extra={"summary": dict(tally, seconds=round(time.perf_counter() - start, 3))},
            on_error=close_errors.append,
        )
    if close_errors:
        raise CellsegError(f"the batch ran but its records could not be written: {close_errors[0]}")
    return BatchSummary(
        done=tally["done"],
        skipped=tally["skipped"],
        failed=tally["failed"],
        objects=tally["objects"],
        seconds=time.perf_counter() - start,
        errors=tuple(sorted(errors)),
        out=str(out_path),
        cancelled=cancelled,
    )


def run_batch(*args: Any, **kwargs: Any) -> BatchSummary:
    """Run :func:`iter_batch` to the end and return its :class:`BatchSummary`.

    Takes the same arguments as :func:`iter_batch`.
    """
    return drain(iter_batch(*args, **kwargs))
