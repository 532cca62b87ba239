"""Segment images too large for memory: ``iter_predict_blocks``.

Each plane is segmented block by block (:mod:`napari_cellseg.inference.stitch`): a block and its
halo are read from the (memory-mapped) image, run through ``iter_predict_planes`` with the
*whole plane's* normalisation, and the stitched labels are written into an array the caller
provides (a zarr array on disk for the batch engine). Host memory then depends on the
block size, not on the image size. Reading the planes:
:mod:`napari_cellseg.inference.block_reading`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.device import resolve_device
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, Progress, relay
from napari_cellseg.inference.block_reading import (
    check_dtype,
    plane_normalisation,
    planes,
    read_region,
    release_pages,
)
from napari_cellseg.inference.model_runner import cached_load
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.preprocess import check_image, label_shape, resolve_axes
from napari_cellseg.inference.stitch import Block, LabelStore, StitchStats, iter_stitch_blocks
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import BlockOptions, PredictParams

__all__ = [
    "BlockwisePrediction",
    "is_large_plane",
    "iter_predict_blocks",
    "iter_predict_large",
]

Measure = Callable[[np.ndarray, np.ndarray, str], dict[str, np.ndarray]]


@dataclass
class BlockwisePrediction:
    """The result of :func:`iter_predict_blocks`; the labels are in the caller's array."""

    labels: LabelStore
    table: dict[str, np.ndarray]
    card: ModelCard
    params: PredictParams
    device: str
    axes: str
    stats: list[StitchStats] = field(default_factory=list)
    measurements: dict[str, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    raw: list[Any] = field(repr=False, default_factory=list)
    probabilities: None = None
    scratch: Path | None = None  # a folder the caller made for ``labels`` (to remove later)
    diameter: float | None = None
    scale: float = 1.0
    backend: str = ""  # what ran the network (Prediction.backend)

    @property
    def n_objects(self) -> int:
        """Number of objects over all planes."""
        return int(sum(s.objects for s in self.stats))


def iter_predict_blocks(
    image: np.ndarray,
    model: str | Path | LoadedModel,
    out: LabelStore,
    params: PredictParams | None = None,
    *,
    blocks: BlockOptions | None = None,
    measure: Measure | None = None,
    should_stop: Callable[[], bool] | None = None,
    scale: float = 1.0,
) -> Generator[Progress | Notice, None, BlockwisePrediction]:
    """Segment an image block by block, writing stitched labels into ``out``.

    Parameters
    ----------
    image : numpy.ndarray
        The image, typically a ``numpy.memmap``: only one block (plus halo) is read at a
        time. Axes as for :func:`~napari_cellseg.inference.planes.iter_predict_planes`.
    model : str, Path or LoadedModel
        A weight file or a loaded model.
    out : array-like
        Zero-filled unsigned labels of ``label_shape(image.shape, axes)`` (uint32 advised),
        written block by block; a zarr array keeps them on disk.
    params : PredictParams, optional
        As for ``iter_predict_planes``; tiles are cut inside each block.
    blocks : BlockOptions, optional
        Block edge and the margin around it (objects larger than the halo may be cut);
        the defaults when omitted.
    measure : callable, optional
        ``measure(labels, image_crop, plane_axes)`` gives a column table for the new
        objects of a block (as :func:`napari_cellseg.batch.measure.measure_labels`); its
        coordinates are shifted to the plane and the rows collected in ``measurements``.
    should_stop : callable, optional
        Polled at every event; True raises :class:`CancelledError`.
    scale : float
        Each block, with its halo, is rescaled by this before the network and its labels
        brought back to the image's grid before stitching (block, halo and stitching stay
        in the image's pixels); see :mod:`.object_size`.

    Returns
    -------
    BlockwisePrediction
        The object table (``plane``, ``label``, ``area``, ``bbox_*`` in plane coordinates)
        and, with ``measure``, the measurements.
    """
    from napari_cellseg.inference.planes import concat_tables, iter_predict_planes

    params = params or PredictParams()
    blocks = blocks or BlockOptions()
    start = time.perf_counter()
    axes = resolve_axes(image.shape, params.axes)
    # shapes and type only: each block's own predict checks its pixels (NaN, inf), so a
    # memory-mapped or zarr image is never read whole here
    check_image(np.broadcast_to(np.zeros((), check_dtype(image.dtype)), image.shape), axes=axes)
    expected = label_shape(image.shape, axes)
    if tuple(out.shape) != expected:
        raise CellsegError(f"the label array has shape {tuple(out.shape)}, expected {expected}")
    device = resolve_device(params.device)
    loaded = model if isinstance(model, LoadedModel) else cached_load(model, device)[0]
    params = params.resolved(loaded.card.post_params())  # unset thresholds: the model's own
    plane_axes = "YX" + "".join(a for a in axes if a in "CS")
    crop_params = replace(params, axes=plane_axes)
    result = BlockwisePrediction(
        labels=out,
        table={},
        card=loaded.card,
        params=params,
        device=str(device),
        axes=axes,
        scale=scale,
    )
    tables: list[dict[str, np.ndarray]] = []
    measured: list[dict[str, np.ndarray]] = []
    seen: set[str] = set()
    for plane_number, (index, plane) in enumerate(planes(image, axes)):
        card = replace(
            loaded.card, normalisation=plane_normalisation(plane, loaded.card, params.channels)
        )
        fixed = loaded.with_card(card, notes=[])
        crops: dict[Block, np.ndarray] = {}

        def new_notice(event: Any) -> Notice | None:
            if isinstance(event, Notice) and event.message not in seen:
                seen.add(event.message)
                result.notices.append(event.message)
                return event
            return None

        def segment_region(block: Block, plane=plane, fixed=fixed, crops=crops):
            crop = read_region(plane, block)
            release_pages(plane)
            crops.clear()
            crops[block] = crop
            prediction = yield from relay(
                iter_predict_planes(crop, fixed, crop_params, should_stop=should_stop, scale=scale),
                new_notice,
            )
            for key, value in prediction.timings.items():
                result.timings[key] = result.timings.get(key, 0.0) + value
            result.device, result.backend = prediction.device, prediction.backend
            return prediction.labels

        def on_block(
            block: Block,
            region: np.ndarray,
            new_ids: list[int],
            crops=crops,
            index=index,
            plane_number=plane_number,
        ):
            if not new_ids:
                return
            own = np.where(np.isin(region, new_ids), region, 0)
            table = _shifted(object_table(own), block, plane_number)
            tables.append(table)
            if measure is not None:
                columns = measure(own, crops[block], plane_axes)
                measured.append(_with_index(_shifted(columns, block, None), axes, index))

        writer = _PlaneStore(out, index)
        stats = yield from iter_stitch_blocks(
            writer,
            segment_region,
            block_size=blocks.block_size,
            halo=blocks.halo,
            on_block=on_block,
            should_stop=should_stop,
        )
        result.stats.append(stats)
    result.table = concat_tables(tables)
    result.measurements = concat_tables(measured) if measure is not None else None
    result.timings["total"] = time.perf_counter() - start
    return result


def is_large_plane(shape: Sequence[int], axes: str, block_pixels: int) -> bool:
    """Whether one ``(Y, X)`` plane of an image of ``shape`` has more than ``block_pixels``."""
    plane = label_shape(shape, axes)[-2:]
    return plane[0] * plane[1] > block_pixels


def iter_predict_large(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    blocks: BlockOptions | None = None,
    should_stop: Callable[[], bool] | None = None,
    scale: float = 1.0,
) -> Generator[Progress | Notice, None, Any]:
    """:func:`iter_predict_blocks` into labels held in memory; returns a ``Prediction``.

    For a viewer: the labels (4 bytes per pixel while they are made, then uint16 when the
    ids fit) are all that grows with the image; the input may be lazy (dask, zarr). The
    prediction keeps no network output, so new thresholds need a new run.
    """
    from napari_cellseg.inference.planes import Prediction

    params = params or PredictParams()
    blocks = blocks or BlockOptions()
    axes = resolve_axes(image.shape, params.axes)
    out = np.zeros(label_shape(image.shape, axes), np.uint32)
    result = yield from iter_predict_blocks(
        image,
        model,
        out,
        replace(params, axes=axes),
        blocks=blocks,
        should_stop=should_stop,
        scale=scale,
    )
    if out.max(initial=0) <= np.iinfo(np.uint16).max:
        out = out.astype(np.uint16)
    note = (
        f"large image: segmented in {blocks.block_size} px blocks with a {blocks.halo} px margin; "
        "run again to apply other thresholds"
    )
    return Prediction(
        labels=out,
        table=result.table,
        card=result.card,
        params=params.resolved(result.params.post),
        device=result.device,
        axes=axes,
        timings=result.timings,
        notices=[*result.notices, note],
        scale=scale,
        backend=result.backend,
    )


class _PlaneStore:
    """One plane of a label stack, addressed by ``(Y, X)`` slices."""

    def __init__(self, out: LabelStore, index: tuple[int, ...]) -> None:
        self._out, self._index = out, tuple(index)
        self.shape = tuple(out.shape[-2:])

    def __getitem__(self, key: Any) -> Any:
        return self._out[self._index + tuple(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._out[self._index + tuple(key)] = value


def _shifted(table: dict[str, np.ndarray], block: Block, plane: int | None) -> dict[str, Any]:
    """Region coordinates -> plane coordinates (bbox and centroid columns)."""
    out = dict(table)
    for key in list(out):
        if key.startswith(("bbox_y", "centroid_y")) and not key.endswith("_um"):
            out[key] = np.asarray(out[key]) + block.ey0
        elif key.startswith(("bbox_x", "centroid_x")) and not key.endswith("_um"):
            out[key] = np.asarray(out[key]) + block.ex0
    if plane is not None:
        out["plane"] = np.full(len(out["label"]), plane, np.int64)
    return out


def _with_index(
    table: dict[str, np.ndarray], axes: str, index: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Leading ``t``/``z`` columns for a stack (as ``measure_labels`` writes them)."""
    names = [a.lower() for a in axes.upper() if a in "TZ"]
    n = len(table["label"])
    lead = {name: np.full(n, pos, np.int64) for name, pos in zip(names, index, strict=True)}
    return {**lead, **table}
