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
from napari_cellseg.inference.device_blend import DeviceTiles
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import unet_instances
from napari_cellseg.inference.tiling import Tile, TileBlender, pad_to_multiple
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.unused_stages import RESNET_STYLE_ENCODERS
from napari_cellseg.params import PostprocessParams, PredictParams

#: Tiles are padded to a multiple of this unless the encoder needs less (an smp U-Net of
#: depth 5 halves its input 5 times; :func:`tile_multiple`).
UNET_MULTIPLE = 32
#: Turn cuDNN's autotuner on when a model is prepared for CUDA (:func:`prepare_model`).
#: Off: on an H200 (session 16, ``bench/inference.py`` with and without ``--autotune``)
#: it made the first image of each new size 0.4-0.8 s slower (each new tile shape is
#: tuned) and later ones no faster (best of 3: 1024² 0.136 s on / 0.126 s off, 2048²
#: 0.537 / 0.505 s).
CUDNN_AUTOTUNE = False


def tile_multiple(card: ModelCard) -> int:
    """What a U-Net's tiles are padded to a multiple of: what its encoder halves them to.

    smp's ResNet-style encoders halve their input ``encoder_depth`` times, so a depth-4
    U-Net (the demo's) takes sides of any multiple of 16; other encoders get
    :data:`UNET_MULTIPLE` (32, what any smp encoder of depth 5 needs). Planes are also cut
    into even tiles whose sides are multiples of it (:func:`even_tiles`).

    >>> card = ModelCard.for_model("unet", {"encoder_name": "resnet18", "encoder_depth": 4,
    ...                                     "decoder_channels": [128, 64, 32, 16]})
    >>> tile_multiple(card), tile_multiple(ModelCard.for_model("unet", {}))
    (16, 32)
    """
    args = card.builder_args
    depth = int(args.get("encoder_depth", 5))
    if depth < 5 and str(args.get("encoder_name", "resnet34")) in RESNET_STYLE_ENCODERS:
        return 2 ** max(depth, 1)
    return UNET_MULTIPLE


def even_tiles(card: ModelCard) -> int:
    """Planes are cut into even tiles whose sides are multiples of this
    (:func:`~napari_cellseg.inference.tiling.plan_tiles`): the fewest tiles, least padding."""
    return tile_multiple(card)


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
    multiple = tile_multiple(runner.card)
    source = DeviceTiles.of(runner, x, batches, multiple) if runner.blends_on_device else None
    if source is None:  # the CPU (or tiles the device path cannot cut): tiles go one batch
        source = HostTiles(runner, x, multiple)  # at a time to the network, blended in numpy
    batches = in_passes(runner, batches, multiple)  # one pass's tiles at a time: less held
    height, width = x.shape[-2:]
    total_copies = len(batches) * params.tta  # progress steps: one per copy of a batch
    blender = source.blender(len(runner.card.outputs), (height, width), overlap)
    for done, batch in enumerate(batches, start=1):
        stacked = source.stack(batch)
        if stacked is None:  # tiles of different size (never with plan_tiles, but stay safe)
            probs = source.one_by_one(batch, params.tta)
        else:
            steps = (Progress("tiles", (done - 1) * params.tta + i, total_copies, message)
                     for i in range(1, params.tta))  # fmt: skip
            probs = yield from _averaged_copies(source, stacked, params.tta, steps, checkpoint)
        for tile, prob in zip(batch, probs, strict=True):
            blender.add(tile, prob[:, : tile.shape[0], : tile.shape[1]])
        yield checkpoint(Progress("tiles", done * params.tta, total_copies, message))
    source.done(sum(map(len, batches)))
    return source.result(blender)


def padded_shape(shape: tuple[int, ...], multiple: int = UNET_MULTIPLE) -> tuple[int, int]:
    """The ``(Y, X)`` of a tile (or a plane of one tile) once padded for the U-Net.

    >>> padded_shape((256, 250)), padded_shape((3, 520, 696)), padded_shape((520, 696), 16)
    ((256, 256), (544, 704), (528, 704))
    """
    return tuple(-(-int(s) // multiple) * multiple for s in shape[-2:])  # type: ignore[return-value]


def in_passes(
    runner: Any, batches: list[list[Tile]], multiple: int = UNET_MULTIPLE
) -> list[list[Tile]]:
    """``batches`` cut into the runner's passes (:meth:`.ModelRunner.tiles_per_pass`).

    The network sees the same tiles together either way (on the CPU one 512² tile a pass;
    on a GPU the whole batch), but only one pass's tiles are then cut, stacked and held
    with their probabilities at a time: for a 2048² RGB image on the CPU, batches of four
    544² tiles held 14 MiB of input and twice 14 MiB of probabilities (the passes' and
    their joined copy) at the peak.
    """
    passes = []
    for batch in batches:
        step = max(1, runner.tiles_per_pass(len(batch), padded_shape(batch[0].shape, multiple)))
        passes += [batch[i : i + step] for i in range(0, len(batch), step)]
    return passes


def run_planes(
    runner: Any,
    xs: list[np.ndarray],
    overlap: int,
    params: PredictParams,
    checkpoint: Callable[[Any], Any],
    message: str,
) -> Generator[Any, None, list[np.ndarray]]:
    """The probability maps of planes that each fit in one tile, through the network together.

    ``xs`` are ``(C, Y, X)`` network inputs of one shape; they go as one batch (the runner
    splits it into its passes), test-time augmented copy by copy, and each plane's tile is
    blended as :func:`run_tiles` blends a plane of one tile, so each map is that plane's
    :func:`run_tiles` result (up to the float rounding of a batch of several).
    """
    height, width = xs[0].shape[-2:]
    multiple = tile_multiple(runner.card)
    source = HostTiles(runner, None, multiple)
    stacked = np.stack([pad_to_multiple(x, multiple)[0] for x in xs])
    steps = (Progress("tiles", i, params.tta, message) for i in range(1, params.tta))
    probs = yield from _averaged_copies(source, stacked, params.tta, steps, checkpoint)
    whole = Tile(0, 0, height, width)
    maps = []
    for prob in probs:
        blender = source.blender(len(runner.card.outputs), (height, width), overlap)
        blender.add(whole, prob[:, :height, :width])
        maps.append(blender.result())
    yield checkpoint(Progress("tiles", params.tta, params.tta, message))
    return maps


def _averaged_copies(
    source: Any, stacked: Any, tta: int, steps: Any, checkpoint: Callable[[Any], Any]
) -> Generator[Any, None, Any]:
    """The mean of ``tta`` augmented copies' probabilities of a stacked batch, one copy at a
    time (``steps``: the progress event yielded before each copy after the first)."""
    probs = source.copy(stacked, 0)
    for index, step in zip(range(1, tta), steps, strict=True):
        yield checkpoint(step)
        probs = probs + source.copy(stacked, index)  # (not in place: device tensors are
    return probs / tta if tta > 1 else probs  # inference tensors, read-only outside it)


class HostTiles:
    """A plane's tiles cut and padded in numpy, blended on the host: the CPU's tile source of
    :func:`run_tiles` (the GPU's is :class:`~napari_cellseg.inference.device_blend.DeviceTiles`).
    """

    def __init__(self, runner: Any, x: np.ndarray, multiple: int = UNET_MULTIPLE) -> None:
        self.runner = runner
        self.x = x
        self.multiple = multiple  # tiles are padded to multiples of it (tile_multiple)

    def blender(self, channels: int, shape: tuple[int, int], overlap: int) -> TileBlender:
        return TileBlender(channels, shape, overlap)

    def _padded(self, batch: list[Tile]) -> list[np.ndarray]:
        return [pad_to_multiple(t.view(self.x), self.multiple)[0] for t in batch]

    def stack(self, batch: list[Tile]) -> np.ndarray | None:
        """The batch's tiles padded to multiples of :attr:`multiple`, ``(B, C, H, W)``; None
        if they differ."""
        padded = self._padded(batch)
        return np.stack(padded) if len({p.shape for p in padded}) == 1 else None

    def copy(self, stacked: np.ndarray, index: int) -> np.ndarray:
        """Probabilities of augmented copy ``index`` (:meth:`.ModelRunner.unet_copy`)."""
        return self.runner.unet_copy(stacked, index)

    def one_by_one(self, batch: list[Tile], tta: int) -> list[np.ndarray]:
        """Each tile alone, all copies averaged (tiles of different shapes)."""
        return [self.runner.unet_probabilities(p[None], tta)[0] for p in self._padded(batch)]

    def result(self, blender: TileBlender) -> np.ndarray:
        """The blended map (already on the host)."""
        return blender.result()

    def done(self, n_tiles: int) -> None:
        """A plane of several tiles: free the activations' buffers before the watershed
        (one tile: keep them for the next image of the same size)."""
        if n_tiles > 1:
            self.runner.release_buffers()


def to_instances(
    card: ModelCard, output: np.ndarray, shape: tuple[int, int], post: PostprocessParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and object table of a plane's probabilities (``shape`` is theirs)."""
    labels = unet_instances(output, card.outputs, post)
    return labels, object_table(labels)


def output_shape(output: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The ``(Y, X)`` size of a plane, read from its kept probabilities."""
    return tuple(output.shape[-2:])
