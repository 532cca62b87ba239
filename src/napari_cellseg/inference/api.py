"""The front door for inference: ``iter_predict`` / ``predict`` pick whole planes or blocks.

The image's axes are resolved once, here. A single plane (no T or Z axis) with more than
``blocks.block_pixels`` pixels is segmented block by block into labels held in memory
(:func:`~napari_cellseg.inference.blocks.iter_predict_large`); anything else goes whole
plane by whole plane (:func:`~napari_cellseg.inference.planes.iter_predict_planes`), then,
when the parameters ask, the planes' objects are joined in 3D and over time (:mod:`.joining`).
Both yield only events and return a :class:`~napari_cellseg.inference.planes.Prediction`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.device import resolve_device
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, Progress, drain, relay
from napari_cellseg.inference import blocks as _blocks
from napari_cellseg.inference import planes as _planes
from napari_cellseg.inference.diameter import iter_choose_scale
from napari_cellseg.inference.joining import iter_join, joins
from napari_cellseg.inference.model_runner import cached_load
from napari_cellseg.inference.preprocess import iter_planes, resolve_axes
from napari_cellseg.models.polarity import image_hint
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import BlockOptions, PredictParams

__all__ = ["DEFAULT_BLOCKS", "in_blocks", "iter_predict", "polarity_notice", "predict"]

DEFAULT_BLOCKS = BlockOptions()
"""The block options used when a caller gives none (read at call time)."""


def in_blocks(
    shape: Sequence[int], axes: str | None = None, blocks: BlockOptions | None = None
) -> bool:
    """Whether :func:`iter_predict` segments an image of ``shape`` block by block.

    True for one plane (no T or Z axis) above ``blocks.block_pixels`` pixels. ``axes`` are
    checked, or guessed when omitted; ``blocks`` default to :data:`DEFAULT_BLOCKS`.

    >>> in_blocks((512, 512)), in_blocks((5000, 5000)), in_blocks((2, 5000, 5000), "ZYX")
    (False, True, False)
    """
    axes = resolve_axes(shape, axes)
    limit = (blocks or DEFAULT_BLOCKS).block_pixels
    return all(a not in "TZ" for a in axes) and _blocks.is_large_plane(shape, axes, limit)


def iter_predict(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    blocks: BlockOptions | None = None,
    should_stop: Callable[[], bool] | None = None,
    pixel_size_um: float | Sequence[float] | None = None,
) -> Generator[Progress | Notice, None, Any]:
    """Segment ``image`` with ``model``, yielding progress events; returns the Prediction.

    Parameters
    ----------
    image : array-like
        2-D grey, RGB(A), multichannel, z-stack or time-lapse (at most 4 dimensions); a
        numpy array, or a lazy one (dask, zarr, memmap) for a plane large enough to go
        block by block. ``params.axes`` says which axis is which (guessed otherwise).
    model : str, Path or LoadedModel
        A weight file (loaded once and cached) or an already loaded model.
    params : PredictParams, optional
        Device, tiling, channels and post-processing (defaults when omitted).
    blocks : BlockOptions, optional
        When a plane is large enough to go block by block, and the blocks' size and halo;
        :data:`DEFAULT_BLOCKS` when omitted.
    should_stop : callable, optional
        Polled at every yield; when it returns True, :class:`CancelledError` is raised.
    pixel_size_um : float or (float, float), optional
        The image's pixel size ``(y, x)`` in micrometres, for ``params.diameter`` given in
        micrometres (e.g. ``"12um"``).

    Yields
    ------
    Progress or Notice

    Returns
    -------
    Prediction
        Labels, object table, timings, and the ``diameter`` and ``scale`` used
        (:mod:`.diameter`): the image is rescaled by ``scale`` before the network, the
        labels and table are on the image's grid. Block by block it keeps no network
        output, so :func:`~napari_cellseg.inference.planes.reapply` needs a new run there.
    """
    params = params or PredictParams()
    blocks = blocks or DEFAULT_BLOCKS
    axes = resolve_axes(np.shape(image), params.axes)
    run = params if params.axes == axes else replace(params, axes=axes)
    said: list[str] = []

    def note(event: Any) -> Any:
        if isinstance(event, Notice):
            said.append(event.message)
        return event

    start = time.perf_counter()
    # the size estimate's passes on the whole image: (network output, device it ran on)
    quick_outputs: dict[float, tuple[np.ndarray, str]] = {}
    diameter, scale = yield from relay(
        iter_choose_scale(
            image,
            model,
            run,
            pixel_size_um=pixel_size_um,
            should_stop=should_stop,
            keep=quick_outputs,
        ),
        note,
    )
    sizing = time.perf_counter() - start  # the size estimate's quick passes (auto)
    if in_blocks(np.shape(image), axes, blocks):
        work = _blocks.iter_predict_large(
            image, model, run, blocks=blocks, should_stop=should_stop, scale=scale
        )
    else:  # a pass at this very scale saw the whole image without augmentation: reuse it
        hint = polarity_notice(image, axes, model, run)
        if hint is not None:
            yield note(hint)
        reuse, reuse_device = (
            quick_outputs.get(scale, (None, None)) if run.tta == 1 else (None, None)
        )
        quick_outputs.clear()  # the other passes' maps are not needed any more
        work = _planes.iter_predict_planes(
            image,
            model,
            run,
            should_stop=should_stop,
            scale=scale,
            network_output=reuse,
            network_device=reuse_device,
        )
    prediction = yield from work
    if joins(run, axes):  # z-stacks / time-lapses: 3D objects, ids kept over time
        prediction = yield from iter_join(prediction, should_stop=should_stop)
    prediction.diameter, prediction.scale = diameter, scale
    prediction.timings["diameter"] = sizing
    prediction.timings["total"] = prediction.timings.get("total", 0.0) + sizing
    prediction.notices[:0] = said
    if run is not params:  # the Prediction records the parameters as the caller gave them
        prediction.params = replace(prediction.params, axes=params.axes)
    return prediction


def polarity_notice(
    image: Any, axes: str, model: str | Path | LoadedModel, params: PredictParams
) -> Notice | None:
    """A warning when the image's first plane is the other way round (bright objects on a
    dark background, or dark on bright) from nearly all the model's training images
    (:mod:`~napari_cellseg.models.polarity`); ``None`` when it is not, or when the card
    records no training polarity. Never stops a run: an image the model cannot take is
    refused by the run itself, with its own message."""
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        loaded = cached_load(model, resolve_device(params.device))[0]
    if loaded.card.learned_polarity() is None:
        return None
    try:
        _, plane = next(iter_planes(np.asarray(image), axes))
        hint = image_hint(plane, loaded.card, invert=params.invert, channels=params.channels)
    except (CellsegError, ValueError, IndexError, StopIteration):
        return None
    return Notice(hint, "warning") if hint else None


def predict(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    **kwargs: Any,
) -> Any:
    """Run :func:`iter_predict` to the end and return its Prediction."""
    return drain(iter_predict(image, model, params, **kwargs))
