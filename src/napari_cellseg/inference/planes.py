"""Whole planes from an image and a weight file to instance labels: ``iter_predict_planes``.

The front door, :func:`napari_cellseg.inference.iter_predict`, sends an image here unless
a single plane is large enough to go block by block (:mod:`.blocks`).
``iter_predict_planes`` is a generator: it yields :class:`Progress` and :class:`Notice` events
and returns the :class:`Prediction` (:func:`~napari_cellseg.events.drain` runs it). Closing
it, or a ``should_stop`` callback returning True, stops it at the next yield with
:class:`CancelledError`; nothing is written by this module, so nothing is left half done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.device import resolve_device
from napari_cellseg.events import CancelledError, Event, Notice, Progress, drain
from napari_cellseg.families import family_part, family_spec
from napari_cellseg.inference import transfer
from napari_cellseg.inference.joining import join
from napari_cellseg.inference.model_runner import ModelRunner, cached_load
from napari_cellseg.inference.object_size import (
    rescale_input,
    resize_maps,
    scaled_shape,
    to_image_grid,
)
from napari_cellseg.inference.plane_network import (
    FallbackState,
    planes_together,
    run_plane_with_fallback,
    run_planes_with_fallback,
)
from napari_cellseg.inference.plane_overlap import PlaneOverlap, post_threads
from napari_cellseg.inference.preprocess import (
    check_image,
    iter_planes,
    label_shape,
    resolve_axes,
    to_model_input,
)
from napari_cellseg.inference.transfer import fetched
from napari_cellseg.io.files import label_dtype
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.normalise import with_invert
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PostprocessParams, PredictParams


@dataclass
class Prediction:
    """The result of :func:`iter_predict_planes` (and of the front door ``iter_predict``).

    Attributes
    ----------
    labels : np.ndarray
        Instance labels (uint16, or uint32 when needed) with the image's T/Z axes and Y, X.
    table : dict of str to np.ndarray
        One row per object: ``plane``, ``label``, ``area``, ``bbox_*`` and, for Mask R-CNN,
        ``score`` and ``class``.
    probabilities : np.ndarray or None
        U-Net probability maps ``(..., C, Y, X)`` float16, when asked for.
    raw : list
        The network output kept per plane (U-Net probabilities or Mask R-CNN detections),
        so :func:`reapply` can change thresholds without running the network.
    timings : dict of str to float
        Seconds per stage: ``load``, ``preprocess``, ``network``, ``postprocess``, ``total``;
        from the front door also ``diameter`` (the size estimate of ``diameter="auto"``,
        included in ``total``). ``postprocess`` sums each plane's time in its thread: a
        stack overlapped with the network (:mod:`.plane_overlap`) takes less than the sum.
    diameter : float or None
        The object diameter (px of the image) the run was scaled for: given, converted from
        micrometres or estimated (``diameter="auto"``); ``None``: no diameter was used.
    scale : float
        The factor the image was rescaled by before the network (1.0: not rescaled).
        ``raw`` is at that scale; ``labels``, ``table`` and ``probabilities`` (resized
        back, bilinear) are always on the image's grid.
    joined_objects : int or None
        Set when the planes' objects were joined in 3D or over time (``params.stitch_3d``,
        ``link_time``; :mod:`.joining`): how many objects there are.
    backend : str
        What ran the network: ``"PyTorch"``, ``"ONNX Runtime"`` or ``"PyTorch bfloat16"``
        (``""`` when unknown).
    vanished : list of int
        Per plane, the tiny objects that vanished when the labels were brought back to the
        image's grid (rescaled runs; a notice gives their sum).
    """

    labels: np.ndarray
    table: dict[str, np.ndarray]
    card: ModelCard
    params: PredictParams
    device: str
    axes: str
    raw: list[Any] = field(repr=False, default_factory=list)
    probabilities: np.ndarray | None = field(repr=False, default=None)
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    diameter: float | None = None
    scale: float = 1.0
    joined_objects: int | None = None
    backend: str = ""
    vanished: list[int] = field(repr=False, default_factory=list)

    @property
    def n_objects(self) -> int:
        """Number of objects: 3D / linked ones when joined (:mod:`.joining`), else per plane."""
        if self.joined_objects is not None:
            return self.joined_objects
        return len(self.table.get("label", ()))


def predict_planes(
    image: np.ndarray,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    **kwargs: Any,
) -> Prediction:
    """Run :func:`iter_predict_planes` to the end and return its :class:`Prediction`."""
    return drain(iter_predict_planes(image, model, params, **kwargs))


def iter_predict_planes(
    image: np.ndarray,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    scale: float = 1.0,
    network_output: np.ndarray | None = None,
    network_device: str | None = None,
) -> Generator[Event, None, Prediction]:
    """Segment ``image`` with ``model``, yielding progress events; returns the Prediction.

    Parameters
    ----------
    image : np.ndarray
        2-D grey, RGB(A), multichannel, z-stack or time-lapse (at most 4 dimensions);
        8/16-bit or float. ``params.axes`` says which axis is which (guessed otherwise).
    model : str, Path or LoadedModel
        A weight file (loaded once and cached) or an already loaded model.
    params : PredictParams, optional
        Device, tiling, channels and post-processing (defaults when omitted).
    should_stop : callable, optional
        Polled at every yield; when it returns True, :class:`CancelledError` is raised.
    scale : float
        Each plane is rescaled by this before the network and its labels brought back
        (:mod:`.object_size`); ``params.diameter`` is not read here (the front door
        turns it into ``scale``).
    network_output : numpy.ndarray, optional
        A single-plane image's U-Net probabilities at ``scale``, already computed with these
        parameters (the size estimate's pass at the chosen scale, :mod:`.diameter`): used
        instead of running the network again.
    network_device : str, optional
        The device that made ``network_output`` (the CPU when that pass ran out of GPU
        memory), reported as the Prediction's device.

    Yields
    ------
    Progress or Notice

    Returns
    -------
    Prediction

    Raises
    ------
    CellsegError
        For inputs the model cannot take (clear message saying what to do).
    CancelledError
        When stopped.
    """
    params = params or PredictParams()
    start = time.perf_counter()
    timings = {"load": 0.0, "preprocess": 0.0, "network": 0.0, "postprocess": 0.0}

    def checkpoint(event: Event) -> Event:
        if should_stop is not None and should_stop():
            raise CancelledError("segmentation was stopped")
        return event

    image = np.asarray(image)
    axes = resolve_axes(image.shape, params.axes)
    check_image(image, axes=axes)
    device = resolve_device(params.device)
    t0 = time.perf_counter()
    if isinstance(model, LoadedModel):
        loaded, cached = model, True
    else:
        loaded, cached = cached_load(model, device)
    timings["load"] = time.perf_counter() - t0
    card = loaded.card
    params = params.resolved(card.post_params())  # unset thresholds: the model's own
    runner = ModelRunner(
        loaded,
        device,
        mixed_precision=params.mixed_precision,
        backend=params.backend,
        compile=params.compile,
    )
    notices = list(loaded.notes) + ([runner.notice] if runner.notice else [])
    for note in notices:
        yield checkpoint(Notice(note))
    engine = f" ({runner.backend_name})" if runner.backend_name != "PyTorch" else ""
    yield checkpoint(
        Progress("load", 1, 1, f"{card.name} on {device}{engine}" + (" (cached)" if cached else ""))
    )

    planes = list(iter_planes(image, axes))
    out_lead = label_shape(image.shape, axes)[:-2]
    label_planes: list[np.ndarray] = []
    raw: list[Any] = []
    prob_planes: list[np.ndarray] = []
    tables: list[dict[str, np.ndarray]] = []
    state = FallbackState(params.batch_size, params.tile_size, device)
    vanished: list[int] = []

    def collect(overlap: PlaneOverlap, wait: bool) -> Generator[Event, None, None]:
        for number, (labels, table, lost), seconds in overlap.finished(wait):
            timings["postprocess"] += seconds
            vanished.append(lost)
            table["plane"] = np.full(len(table["label"]), number, np.int64)
            label_planes.append(labels)
            tables.append(table)
            yield checkpoint(Progress("planes", number + 1, len(planes)))

    def finish(overlap: PlaneOverlap, number: int, plane: np.ndarray, x: np.ndarray, output: Any):
        raw.append(output)  # on a GPU maybe still on its way to the host (:mod:`.transfer`)
        if params.keep_probabilities and family_spec(card.family).probability_map:
            output = raw[-1] = fetched(output)
            maps = output if scale == 1.0 else resize_maps(output, plane.shape[:2])
            prob_planes.append(maps.astype(np.float16))
        shapes = (x.shape[-2:], plane.shape[:2])
        overlap.submit(number, partial(_post_plane, card, output, shapes, params.post, scale))
        yield from collect(overlap, wait=False)

    # planes that each fit in one tile wait here to go through the network together
    # (:func:`.plane_network.planes_together`: on CUDA, and small ones on ONNX Runtime)
    waiting: list[tuple[int, np.ndarray, np.ndarray]] = []

    def run_waiting(overlap: PlaneOverlap) -> Generator[Event, None, None]:
        t0 = time.perf_counter()
        outputs = yield from run_planes_with_fallback(
            runner, [x for *_, x in waiting], params, state, checkpoint, waiting[0][0],
            len(planes), notices,
        )  # fmt: skip
        timings["network"] += time.perf_counter() - t0
        for (number, plane, x), output in zip(waiting, outputs, strict=True):
            yield from finish(overlap, number, plane, x, output)
        waiting.clear()

    # a stack's planes are post-processed in worker threads while the network runs the
    # next plane (:mod:`.plane_overlap`: on CUDA; in line on the CPU and for one plane)
    threads = post_threads(state.device, len(planes))
    # two planes in flight: a plane's map comes down while the next one is prepared and
    # queued, and is waited for in its post-processing thread (:mod:`.transfer`)
    runner.fetch_later = threads > 0 and transfer.FETCH_LATER
    with PlaneOverlap(threads) as overlap:
        for plane_number, (_index, plane) in enumerate(planes):
            t0 = time.perf_counter()
            x = to_model_input(
                plane,
                input_channels=card.input_channels,
                channel_handling=card.channel_handling,
                normalisation=with_invert(card.normalisation, params.invert),
                channels=params.channels,
                tiled=scale == 1.0 and not runner.blends_on_device,  # tile by tile on the host
            )
            x = rescale_input(x, scale)
            timings["preprocess"] += time.perf_counter() - t0
            together = len(planes) > 1 and planes_together(runner, x.shape[-2:], params, state)
            if together > 1:
                waiting.append((plane_number, plane, np.asarray(x)))
                if len(waiting) >= together:
                    yield from run_waiting(overlap)
                continue
            t0 = time.perf_counter()
            if network_output is not None and len(planes) == 1:
                output = network_output  # the same input, tiles and network: the same output
                if network_device is not None:
                    state.device = torch.device(network_device)
            else:
                output = yield from run_plane_with_fallback(
                    runner, x, params, state, checkpoint, plane_number, len(planes), notices
                )
            timings["network"] += time.perf_counter() - t0
            yield from finish(overlap, plane_number, plane, x, output)
        if waiting:
            yield from run_waiting(overlap)
        yield from collect(overlap, wait=True)
    raw = [fetched(output) for output in raw]  # every copy is done by now

    if sum(vanished):
        notices.append(vanished_notice(sum(vanished)))
        yield checkpoint(Notice(notices[-1]))
    labels_out = _stack_labels(label_planes, out_lead)
    timings["total"] = time.perf_counter() - start
    return Prediction(
        labels=labels_out,
        table=concat_tables(tables),
        card=card,
        params=replace(params, tile_size=state.tile_size, batch_size=state.batch_size),
        device=str(state.device),
        axes=axes,
        raw=raw,
        probabilities=(
            np.stack(prob_planes).reshape(out_lead + prob_planes[0].shape) if prob_planes else None
        ),
        timings=timings,
        notices=notices,
        scale=scale,
        backend=runner.backend_name,
        vanished=vanished,
    )


def reapply(prediction: Prediction, post: PostprocessParams) -> Prediction:
    """Re-run only the post-processing with new thresholds (no network; milliseconds).

    After a rescaled run (``prediction.scale != 1``) the kept output is at the model's
    scale; the new labels are brought back to the image's grid as the first ones were, and
    joined in 3D / over time as ``prediction.params`` says (:mod:`.joining`).
    """
    t0 = time.perf_counter()
    label_planes, tables = [], []
    image_shape = prediction.labels.shape[-2:]
    rescaled = prediction.scale != 1.0
    for plane_number, output in enumerate(prediction.raw):
        if rescaled:
            shape = scaled_shape(image_shape, prediction.scale)
        else:
            shape = _output_shape(prediction.card, output, prediction.labels)
        labels, table = _postprocess(prediction.card, output, shape, post)
        if rescaled:
            labels, table, _ = to_image_grid(labels, table, image_shape)
        table["plane"] = np.full(len(table["label"]), plane_number, np.int64)
        label_planes.append(labels)
        tables.append(table)
    lead = prediction.labels.shape[:-2]
    new = replace(
        prediction,
        labels=_stack_labels(label_planes, lead),
        table=concat_tables(tables),
        params=replace(prediction.params, post=post),
        joined_objects=None,
    )
    new = join(new)  # stitched / linked as the first run was
    new.timings = {**prediction.timings, "postprocess": time.perf_counter() - t0}
    return new


# -- internals ---------------------------------------------------------------------------
def _postprocess(
    card: ModelCard, output: Any, shape: tuple[int, int], post: PostprocessParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return family_part(card.family, "inference").to_instances(card, output, shape, post)


def _post_plane(
    card: ModelCard,
    output: Any,
    shapes: tuple[tuple[int, int], tuple[int, int]],
    post: PostprocessParams,
    scale: float,
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """A plane's labels and table on the image's grid, and how many objects vanished there
    (``shapes``: the network input's and the image plane's ``(Y, X)``); waits here for a
    map still on its way from the GPU (:func:`.transfer.fetched`)."""
    labels, table = _postprocess(card, fetched(output), shapes[0], post)
    lost = 0
    if scale != 1.0:
        labels, table, lost = to_image_grid(labels, table, shapes[1])
    return labels, table, lost


def _output_shape(card: ModelCard, output: Any, labels: np.ndarray) -> tuple[int, int]:
    return family_part(card.family, "inference").output_shape(output, labels)


def vanished_notice(count: int) -> str:
    """The notice of ``count`` objects lost when labels were brought back to the image's grid."""
    return (
        f"{count} tiny object{'s' if count > 1 else ''} vanished when the labels were brought "
        "back to the image's grid"
    )


def _stack_labels(planes: list[np.ndarray], lead: tuple[int, ...]) -> np.ndarray:
    top = max((int(p.max()) if p.size else 0) for p in planes)
    dtype = label_dtype(top)
    stacked = np.stack([p.astype(dtype, copy=False) for p in planes])
    return stacked.reshape(tuple(lead) + planes[0].shape)


def concat_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Object tables (per plane or block) as one; a column missing from a table is skipped.

    Parameters
    ----------
    tables : list of dict of str to numpy.ndarray
        Tables of columns, e.g. from :func:`~napari_cellseg.inference.object_table.object_table`.

    Returns
    -------
    dict of str to numpy.ndarray
        Every column met, in order of first appearance, rows in the tables' order.

    Examples
    --------
    >>> t = concat_tables([{"label": np.array([1])}, {"label": np.array([2, 3])}])
    >>> t["label"].tolist()
    [1, 2, 3]
    """
    keys: list[str] = []
    for table in tables:
        keys.extend(k for k in table if k not in keys)
    return {k: np.concatenate([t[k] for t in tables if k in t]) for k in keys}
