"""The U-Net family's inference part: probability tiles blended into a map, then a watershed.

Used by :mod:`napari_cellseg.inference.planes` through the family table
(:func:`napari_cellseg.families.family_part`). The raw output of a plane is its
``(C, Y, X)`` float32 probability map, which :func:`to_instances` turns into labels (and
re-applying thresholds re-runs only that).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from napari_cellseg.events import Progress
from napari_cellseg.inference.device_blend import run_tiles_on_device
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import unet_instances
from napari_cellseg.inference.tiling import Tile, TileBlender, pad_to_multiple
from napari_cellseg.models.card import ModelCard
from napari_cellseg.params import PostprocessParams, PredictParams

#: Tiles are padded to a multiple of this (an smp U-Net of depth 5 halves its input 5 times).
UNET_MULTIPLE = 32
#: Planes are cut into even tiles whose sides are multiples of this
#: (:func:`~napari_cellseg.inference.tiling.plan_tiles`): the fewest tiles, least padding.
EVEN_TILES = UNET_MULTIPLE
#: Turn cuDNN's autotuner on when a model is prepared for CUDA (:func:`prepare_model`).
#: Off: on an H200 (session 16, ``bench/inference.py --no-autotune``) it made the first
#: image of each new size 0.4-0.8 s slower (each new tile shape is tuned) and later ones
#: no faster (best of 3: 1024² 0.136 s on / 0.126 s off, 2048² 0.537 / 0.505 s).
CUDNN_AUTOTUNE = False


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Channels-last memory on CUDA (faster convolutions); the model unchanged elsewhere.

    On CUDA it sets cuDNN's autotuner (``torch.backends.cudnn.benchmark``) to
    :data:`CUDNN_AUTOTUNE` (off: the even tile plans give each image size its own tile
    shape, and tuning a new shape cost more than it saved, measured on an H200).
    """
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = CUDNN_AUTOTUNE
    return model


def tile_geometry(card: ModelCard, tile_size: int, overlap: int) -> tuple[int, int]:
    """The tile size and overlap to use: those asked for."""
    return tile_size, overlap


def run_tiles(
    runner: Any,
    x: np.ndarray,
    batches: list[list[Tile]],
    overlap: int,
    params: PredictParams,
    checkpoint: Callable[[Any], Any],
    message: str,
) -> Generator[Any, None, np.ndarray]:
    """Probabilities of every tile (test-time augmented copy by copy), blended into one map.

    Parameters
    ----------
    runner : ModelRunner
        Runs the network (:meth:`~napari_cellseg.inference.model_runner.ModelRunner.unet_copy`).
    x : numpy.ndarray
        ``(C, Y, X)`` network input of the plane.
    batches : list of list of Tile
        The plane's tiles, in batches.
    overlap : int
        Tile overlap (for blending).
    params : PredictParams
        ``tta``: the number of augmented copies.
    checkpoint : callable
        Wraps each yielded event (raises when the run is stopped).
    message : str
        Progress message.

    Yields
    ------
    Progress
        One step per copy of a batch.

    Returns
    -------
    numpy.ndarray
        ``(C_out, Y, X)`` float32 probabilities.
    """
    if runner.blends_on_device:  # on a GPU: the plane up once, the blended map down once
        blended = yield from run_tiles_on_device(
            runner, x, batches, overlap, params, checkpoint, message, UNET_MULTIPLE
        )
        if blended is not None:
            return blended
    height, width = x.shape[-2:]
    total_copies = len(batches) * params.tta  # progress steps: one per copy of a batch
    blender = TileBlender(len(runner.card.outputs), (height, width), overlap)
    for done, batch in enumerate(batches, start=1):
        crops = [x[:, t.y0 : t.y1, t.x0 : t.x1] for t in batch]
        padded = [pad_to_multiple(c, UNET_MULTIPLE) for c in crops]
        shapes = {p.shape for p, _ in padded}
        if len(shapes) == 1:
            stacked = np.stack([p for p, _ in padded])
            probs = runner.unet_copy(stacked, 0)
            for index in range(1, params.tta):  # test-time augmentation, copy by copy
                done_copies = (done - 1) * params.tta + index
                yield checkpoint(Progress("tiles", done_copies, total_copies, message))
                probs += runner.unet_copy(stacked, index)
            probs /= params.tta
        else:  # tiles of different size (never with plan_tiles, but stay safe)
            probs = [runner.unet_probabilities(p[None], params.tta)[0] for p, _ in padded]
        for tile, crop, prob in zip(batch, crops, probs, strict=True):
            blender.add(tile, prob[:, : crop.shape[1], : crop.shape[2]])
        yield checkpoint(Progress("tiles", done * params.tta, total_copies, message))
    if sum(map(len, batches)) > 1:  # a plane of several tiles: free the activations'
        runner.release_buffers()  # buffers before the watershed (one tile: keep them)
    return blender.result()


def to_instances(
    card: ModelCard, output: np.ndarray, shape: tuple[int, int], post: PostprocessParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and object table of a plane's probabilities (``shape`` is theirs)."""
    labels = unet_instances(output, card.outputs, post)
    return labels, object_table(labels)


def output_shape(output: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The ``(Y, X)`` size of a plane, read from its kept probabilities."""
    return tuple(output.shape[-2:])
