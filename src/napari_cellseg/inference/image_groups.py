"""Images of one size through the network together: ``group_key`` and ``iter_predict_images``.

A folder of small images of one size (DSB 2018: 256², 520×696) costs one network pass of
one tile per image, which leaves a GPU mostly idle and ONNX Runtime on the CPU slower per
tile than a pass of several small ones. Here images that each fit in one tile and share
their shape, dtype, axes and scale are stacked as the planes of one time-lapse and go
through :func:`~.planes.iter_predict_planes`, whose planes of one tile go through the
network together where the runner passes several tiles at once
(:func:`~.plane_network.planes_together`: the batch size on CUDA; on ONNX Runtime on the
CPU as many as make one 512² tile, :data:`.model_runner.CPU_ONNX_PASS_PIXELS`; one by one
with PyTorch on the CPU, where batching gains no speed). Each image gets its own
:class:`~.planes.Prediction`, the one it gets alone (on the CPU identical; on a GPU up to
the float rounding of a batch of several); planes are never joined, so no object is linked
across images. The batch runner (:mod:`napari_cellseg.batch.local`) groups consecutive
files by :func:`group_key`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Event, Notice
from napari_cellseg.families import family_part
from napari_cellseg.inference import model_runner
from napari_cellseg.inference.api import in_blocks
from napari_cellseg.inference.object_size import (
    fixed_scale,
    model_card,
    plane_shape,
    scaled_shape,
)
from napari_cellseg.inference.onnx_backend import choose_backend
from napari_cellseg.inference.plane_network import fits_one_tile
from napari_cellseg.inference.planes import Prediction, iter_predict_planes, vanished_notice
from napari_cellseg.inference.preprocess import resolve_axes
from napari_cellseg.inference.unet_strategy import padded_shape, tile_multiple
from napari_cellseg.io.files import label_dtype
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import BlockOptions, PredictParams

__all__ = [
    "IMAGES_TOGETHER",
    "group_key",
    "images_per_group",
    "iter_predict_images",
    "split_planes",
]

#: Let images go through the network together (:func:`group_key`); False: each alone, as
#: before (``bench/batch.py --images-together both`` compares the two).
IMAGES_TOGETHER = True


def images_per_group(
    device: torch.device, card: ModelCard, params: PredictParams, key: tuple | None = None
) -> int:
    """How many images of one :func:`group_key` ``key`` go through the network in one pass.

    The tiles a pass takes on ``device`` (:func:`.model_runner.tiles_per_pass`: the batch
    size on CUDA; on the CPU one, or on ONNX Runtime as many small planes as make one
    512² tile) for a family that runs whole planes together; without ``key`` the most any
    size can get. 1 when :data:`IMAGES_TOGETHER` is off.

    >>> from napari_cellseg.models.card import ModelCard
    >>> card, params = ModelCard("unet", {}, 3), PredictParams(batch_size=8, backend="torch")
    >>> images_per_group(torch.device("cpu"), card, params)
    1
    >>> images_per_group(torch.device("cuda"), card, params)
    8
    """
    if not IMAGES_TOGETHER or not hasattr(family_part(card.family, "inference"), "run_planes"):
        return 1
    onnx = choose_backend(params.backend, card.family, device)[0] in ("onnx", "int8")
    if key is None:
        tile = (1, 1) if onnx else None  # the smallest plane: as many as the batch size
    else:
        shape, _, axes, scale = key
        plane = (shape[axes.index("Y")], shape[axes.index("X")])
        tile = padded_shape(scaled_shape(plane, scale), tile_multiple(card))
    return model_runner.tiles_per_pass(device, params.batch_size, tile, onnx=onnx)


def group_key(
    image: Any,
    card: ModelCard,
    params: PredictParams,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    blocks: BlockOptions | None = None,
) -> tuple | None:
    """What images must share to go through the network together; None: this one goes alone.

    None for a stack (a T or Z axis), a plane large enough to go block by block, a diameter
    estimated per image (``"auto"``: each image may get its own scale), a plane that is more
    than one tile at its scale, and a family that runs tiles only (the Mask R-CNN).

    Parameters
    ----------
    image : array-like
        The image, axes ``params.axes`` (guessed when unset).
    card : ModelCard
        The model's card (family, tile geometry, reference diameter).
    params : PredictParams
        The run's parameters.
    pixel_size_um : float or (float, float), optional
        The image's pixel size, for a diameter in micrometres.
    blocks : BlockOptions, optional
        When a plane goes block by block (:func:`~.api.in_blocks`).

    Returns
    -------
    tuple or None
        ``(shape, dtype, axes, scale)``; images with equal keys can go together.

    Raises
    ------
    CellsegError
        A micrometre diameter without a pixel size (as a run would say).
    """
    if not IMAGES_TOGETHER or not isinstance(image, np.ndarray):
        return None
    axes = resolve_axes(image.shape, params.axes)
    if any(a in "TZ" for a in axes) or in_blocks(image.shape, axes, blocks):
        return None
    fixed = fixed_scale(card, params, pixel_size_um)
    if fixed is None:
        return None
    scale = fixed[1]
    if not fits_one_tile(
        card, scaled_shape(plane_shape(image, axes), scale), params, params.tile_size
    ):
        return None
    return tuple(image.shape), image.dtype.str, axes, scale


def iter_predict_images(
    images: Sequence[np.ndarray],
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Event, None, list[Prediction]]:
    """Segment images of one :func:`group_key` together; returns one Prediction per image.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        Images with one (not None) :func:`group_key`.
    model : str, Path or LoadedModel
        A weight file or a loaded model.
    params : PredictParams, optional
        The run's parameters (defaults when omitted).
    pixel_size_um : float or (float, float), optional
        The images' pixel size, for a diameter in micrometres (their scale is one).
    should_stop : callable, optional
        Polled at every yield; True raises :class:`CancelledError`.

    Yields
    ------
    Progress or Notice

    Returns
    -------
    list of Prediction
        In the order of ``images``; each as :func:`~.api.iter_predict` returns it for that
        image alone. Its ``timings`` are the group's divided evenly among its images.

    Raises
    ------
    CellsegError
        When the images cannot go together (say which key differs).
    """
    params = params or PredictParams()
    if not images:
        return []
    card = model_card(model)
    keys = [
        group_key(image, card, params, pixel_size_um=pixel_size_um) for image in images
    ]  # fmt: skip
    if keys[0] is None or any(key != keys[0] for key in keys):
        raise CellsegError(
            "images go through the network together only with one shape, dtype, axes and "
            f"fixed scale, each in one tile (keys {sorted(set(map(str, keys)))}); run them "
            "one by one with iter_predict"
        )
    axes = keys[0][2]
    diameter, scale, message = fixed_scale(card, params, pixel_size_um)  # type: ignore[misc]
    said = [message] if message else []
    for note in said:
        if should_stop is not None and should_stop():
            raise CancelledError("segmentation was stopped")
        yield Notice(note)
    stack = np.stack(images)
    prediction = yield from iter_predict_planes(
        stack, model, replace(params, axes="T" + axes), should_stop=should_stop, scale=scale
    )
    return [
        replace(one, params=replace(one.params, axes=params.axes), notices=said + one.notices)
        for one in split_planes(prediction, axes, diameter)
    ]


def split_planes(prediction: Prediction, axes: str, diameter: float | None) -> list[Prediction]:
    """A :class:`Prediction` of a stack of independent images, as one per image.

    Labels, table rows (``plane`` 0 in each), network output, probabilities and the
    vanished-objects notice go to their image; times are divided evenly.
    """
    n = len(prediction.raw)
    timings = {k: v / n for k, v in prediction.timings.items()}
    timings["diameter"] = 0.0
    vanished = prediction.vanished or [0] * n
    summed = vanished_notice(sum(vanished)) if sum(vanished) else None
    shared = [note for note in prediction.notices if note != summed]  # said per image below
    out = []
    for k in range(n):
        rows = prediction.table["plane"] == k
        table = {key: column[rows] for key, column in prediction.table.items()}
        table["plane"] = np.zeros(int(rows.sum()), np.int64)
        labels = prediction.labels[k]
        out.append(
            replace(
                prediction,
                labels=labels.astype(label_dtype(int(labels.max()) if labels.size else 0)),
                table=table,
                axes=axes,
                raw=[prediction.raw[k]],
                probabilities=(
                    None if prediction.probabilities is None else prediction.probabilities[k].copy()
                ),
                timings=dict(timings),
                notices=shared + ([vanished_notice(vanished[k])] if vanished[k] else []),
                diameter=diameter,
                vanished=[vanished[k]],
            )
        )
    return out
