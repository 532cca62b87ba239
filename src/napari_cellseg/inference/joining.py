"""A prediction's per-plane objects joined into 3D objects and linked over time.

Segmentation works plane by plane, so a z-stack's or time-lapse's ids restart in every
plane. With ``PredictParams.stitch_3d`` each time point's z planes are stitched into 3D
objects, with ``link_time`` each object keeps one id over the frames
(:mod:`napari_cellseg.labels.stitching`). Both run after the planes are segmented, and
again after :func:`~napari_cellseg.inference.planes.reapply`, so re-thresholding keeps them.
The object table keeps one row per object and plane; its ``label`` column follows the new
ids.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import numpy as np

from napari_cellseg.events import CancelledError, Notice, Progress, drain, relay
from napari_cellseg.inference.preprocess import label_axes
from napari_cellseg.io.pixel_size import file_z_spacing
from napari_cellseg.labels.stitching import iter_link_frames, iter_stitch_planes
from napari_cellseg.params import PredictParams

__all__ = ["iter_join", "join", "joins", "with_file_z_spacing"]


def joins(params: PredictParams, axes: str) -> str:
    """What a run with ``params`` on an image with ``axes`` joins: ``"z"``, ``"t"``, ``"zt"``.

    >>> joins(PredictParams(stitch_3d=True, link_time=True), "TZCYX")
    'zt'
    >>> joins(PredictParams(stitch_3d=True, link_time=True), "ZYX"), joins(PredictParams(), "ZYX")
    ('z', '')
    """
    lead = label_axes(axes)[:-2]
    return ("z" if params.stitch_3d and "Z" in lead else "") + (
        "t" if params.link_time and "T" in lead else ""
    )


def with_file_z_spacing(params: PredictParams, image: Any) -> PredictParams:
    """``params`` with the z spacing ``image``'s file records, when stitching without one.

    ``image``: an :class:`~napari_cellseg.io.images.ImageData` (its ``path`` and
    ``pixel_size_um``; :func:`~napari_cellseg.io.pixel_size.file_z_spacing`).
    """
    if not params.stitch_3d or params.z_spacing is not None:
        return params
    ratio = file_z_spacing(getattr(image, "path", None), getattr(image, "pixel_size_um", None))
    return params if ratio is None else replace(params, z_spacing=ratio)


def iter_join(
    prediction: Any, *, should_stop: Callable[[], bool] | None = None
) -> Generator[Progress | Notice, None, Any]:
    """Stitch and link ``prediction``'s labels as its params say; returns the new Prediction.

    Parameters
    ----------
    prediction : Prediction
        Per-plane labels (:func:`~napari_cellseg.inference.planes.iter_predict_planes`).
    should_stop : callable, optional
        Polled at every yield; when it returns True, :class:`CancelledError` is raised.

    Returns
    -------
    Prediction
        The same when there is nothing to join (no option set, or no Z / T axis), else a
        copy with joined labels (ids 1..n over the stack, or the movie when linked), the
        table's ``label`` column renamed to match and ``joined_objects`` the number of
        objects (per time point added up when stitched but not linked).
    """
    params: PredictParams = prediction.params
    what = joins(params, prediction.axes)
    if not what:
        return prediction

    def checkpoint(event: Any) -> Any:
        if should_stop is not None and should_stop():
            raise CancelledError("segmentation was stopped")
        return event

    before = prediction.labels
    lead = label_axes(prediction.axes)[:-2]
    order = [lead.index(a) for a in "TZ" if a in lead]
    work = np.transpose(before, [*order, len(lead), len(lead) + 1])
    if "T" not in lead:
        work = work[None]
    if "Z" not in lead:
        work = work[:, None]
    work = np.ascontiguousarray(work)  # (T, Z, Y, X)
    spacing = float(params.z_spacing or 1.0)
    if "z" in what:
        stitched = []
        for t, stack in enumerate(work):
            gen = iter_stitch_planes(stack, params.stitch_iou, z_spacing=spacing)
            stitched.append((yield from relay(gen, _stage(checkpoint, t, len(work)))))
        work = _stack(stitched)
    elif work.shape[1] > 1:  # linking without stitching: each plane's objects apart
        work = _unique_per_frame(work)
    if "t" in what:
        gen = iter_link_frames(work, params.stitch_iou, max_gap=params.max_gap)
        work = yield from relay(gen, checkpoint)
    # ids run 1..n per stack (stitched only) or over the movie (linked)
    count = int(work.max()) if "t" in what else sum(int(v.max()) for v in work)
    if "Z" not in lead:
        work = work[:, 0]
    if "T" not in lead:
        work = work[0]
    joined = np.transpose(work, np.argsort([*order, len(lead), len(lead) + 1]))
    table = _rename(prediction.table, before, joined)
    labels = np.ascontiguousarray(joined)
    return replace(prediction, labels=labels, table=table, joined_objects=count)


def join(prediction: Any) -> Any:
    """Run :func:`iter_join` to the end and return its Prediction."""
    return drain(iter_join(prediction))


# -- internals ---------------------------------------------------------------------------
def _stage(checkpoint: Callable[[Any], Any], t: int, n: int) -> Callable[[Any], Any]:
    """Stitching progress over all time points (one stack's planes, ``t`` of ``n``)."""
    if n == 1:
        return checkpoint

    def convert(event: Any) -> Any:
        if isinstance(event, Progress):
            done, total = t * event.total + event.done, n * event.total
            event = Progress(event.stage, done, total, f"time point {t + 1}/{n}")
        return checkpoint(event)

    return convert


def _stack(volumes: list[np.ndarray]) -> np.ndarray:
    top = max(int(v.max()) if v.size else 0 for v in volumes)
    return np.stack(volumes).astype(np.uint16 if top <= 0xFFFF else np.uint32, copy=False)


def _unique_per_frame(work: np.ndarray) -> np.ndarray:
    """(T, Z, Y, X) labels whose ids are unique within a frame (plane by plane offsets)."""
    out = work.astype(np.uint32)
    for frame in out:
        offset = 0
        for plane in frame:
            top = int(plane.max()) if plane.size else 0
            plane[plane > 0] += offset
            offset += top
    return out


def _rename(
    table: dict[str, np.ndarray], before: np.ndarray, after: np.ndarray
) -> dict[str, np.ndarray]:
    """The table with each row's ``label`` the new id of its object (rows of lost ids go)."""
    if "label" not in table or "plane" not in table:
        return table
    old_planes = before.reshape(-1, *before.shape[-2:])
    new_planes = after.reshape(-1, *after.shape[-2:])
    new_label = np.zeros(len(table["label"]), np.int64)
    for p in np.unique(table["plane"]):
        rows = np.flatnonzero(table["plane"] == p)
        old, new = old_planes[p].ravel(), new_planes[p].ravel()
        inside = old > 0
        if not inside.any():
            continue
        pairs = np.unique(np.stack([old[inside], new[inside]]).astype(np.int64), axis=1)
        where = np.searchsorted(pairs[0], table["label"][rows])
        where = np.clip(where, 0, max(0, pairs.shape[1] - 1))
        found = pairs[0][where] == table["label"][rows]
        new_label[rows[found]] = pairs[1][where[found]]
    kept = new_label > 0
    out = {k: np.asarray(v)[kept] for k, v in table.items()}
    out["label"] = new_label[kept].astype(np.asarray(table["label"]).dtype)
    return out
