"""Planes through the network, tile batch by tile batch, with the out-of-memory fallback.

Used by :func:`napari_cellseg.inference.planes.iter_predict_planes`: the family's tile
runner (:func:`~napari_cellseg.families.family_part`) runs a plane's tiles
(:func:`run_plane`); on out-of-memory the batch is halved, then the tile, then the run goes
on on the CPU, each step said in a :class:`~napari_cellseg.events.Notice`
(:func:`run_with_fallback`).

Planes that each fit in one tile (a time-lapse or z-stack of small planes) go through the
network several at a time where the runner passes several tiles at once (on CUDA: the
batch size; on the CPU only small ones on ONNX Runtime, as many as make one 512² tile,
else one by one: :func:`.model_runner.tiles_per_pass`):
:func:`planes_together` says how many, :func:`run_planes_with_fallback` runs them with the
family's ``run_planes``. Batches used to stop at the edge of a plane.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Event, Notice
from napari_cellseg.families import family_part
from napari_cellseg.inference.model_runner import ModelRunner, is_out_of_memory
from napari_cellseg.inference.tiling import plan_tiles
from napari_cellseg.inference.unet_strategy import UNET_MULTIPLE, padded_shape
from napari_cellseg.params import PredictParams

#: The smallest tile the fallback halves down to.
MIN_TILE = 64
#: Let planes of one tile each go through the network together (:func:`planes_together`);
#: False: one plane per pass, as before (``bench/plane_overlap.py --planes-together both``
#: compares the two).
PLANES_TOGETHER = True


@dataclass
class FallbackState:
    batch_size: int
    tile_size: int
    device: torch.device


def run_plane_with_fallback(
    runner, x, params, state, checkpoint, plane_number, n_planes, notices
) -> Generator[Event, None, Any]:
    """Run one plane; on out-of-memory halve the batch, then the tile, then use the CPU."""

    def work() -> Generator[Event, None, Any]:
        return (yield from run_plane(runner, x, params, state, checkpoint, plane_number, n_planes))

    return (yield from run_with_fallback(work, runner, params, state, checkpoint, notices))


def planes_together(
    runner: ModelRunner, shape: tuple[int, int], params: PredictParams, state: FallbackState
) -> int:
    """How many planes of network input ``shape`` ``(Y, X)`` go through the network at once.

    More than one only where each plane fits in one tile of ``state.tile_size``, the family
    can run whole planes together (``run_planes``: the U-Net) and the runner passes several
    tiles at once (:meth:`~.model_runner.ModelRunner.tiles_per_pass`: CUDA, and ONNX Runtime
    on the CPU for small planes), unless :data:`PLANES_TOGETHER` is off.
    """
    multiple = _even_tiles(runner.card) or UNET_MULTIPLE
    together = runner.tiles_per_pass(state.batch_size, padded_shape(shape, multiple))
    if not PLANES_TOGETHER or together <= 1:
        return 1
    return together if fits_one_tile(runner.card, shape, params, state.tile_size) else 1


def _even_tiles(card: Any) -> int | None:
    """The multiple of the family's even tile plans (``even_tiles(card)``), or None: fixed
    tiles (the Mask R-CNN)."""
    even = getattr(family_part(card.family, "inference"), "even_tiles", None)
    return even(card) if even is not None else None


def fits_one_tile(card: Any, shape: tuple[int, int], params: PredictParams, tile_size: int) -> bool:
    """Whether a plane of network input ``shape`` ``(Y, X)`` is one tile of ``tile_size`` for a
    family that can run whole planes together (``run_planes``: the U-Net)."""
    strategy = family_part(card.family, "inference")
    if not hasattr(strategy, "run_planes"):
        return False
    tile_size, overlap = strategy.tile_geometry(card, tile_size, params.overlap)
    return len(plan_tiles(shape, tile_size, overlap, multiple=_even_tiles(card))) == 1


def run_planes_with_fallback(
    runner: ModelRunner,
    xs: list[np.ndarray],
    params: PredictParams,
    state: FallbackState,
    checkpoint,
    first: int,
    n_planes: int,
    notices: list[str],
) -> Generator[Event, None, list[Any]]:
    """The raw outputs of planes ``xs`` (network inputs of one shape), :func:`planes_together`
    at a time; on out-of-memory the group starts again with the smaller batch or tile (one
    plane at a time once a plane no longer fits in one tile), as :func:`run_with_fallback`."""
    strategy = family_part(runner.card.family, "inference")

    def work() -> Generator[Event, None, list[Any]]:
        outputs: list[Any] = []
        together = planes_together(runner, xs[0].shape[-2:], params, state)
        if together <= 1:
            for k, x in enumerate(xs):
                output = yield from run_plane(
                    runner, x, params, state, checkpoint, first + k, n_planes
                )
                outputs.append(output)
            return outputs
        _, overlap = strategy.tile_geometry(runner.card, state.tile_size, params.overlap)
        for i in range(0, len(xs), together):
            group = xs[i : i + together]
            message = f"planes {first + i + 1}-{first + i + len(group)}/{n_planes}"
            outputs += yield from strategy.run_planes(
                runner, group, overlap, params, checkpoint, message
            )
        return outputs

    return (yield from run_with_fallback(work, runner, params, state, checkpoint, notices))


def run_with_fallback(
    work: Callable[[], Generator[Event, None, Any]],
    runner: ModelRunner,
    params: PredictParams,
    state: FallbackState,
    checkpoint,
    notices: list[str],
) -> Generator[Event, None, Any]:
    """Run the generator ``work()``; on out-of-memory halve ``state``'s batch, then its tile,
    then move the runner to the CPU, say so (a warning :class:`Notice`, also appended to
    ``notices``) and run ``work()`` again. Another error from a compiled network
    (``PredictParams.compile``) drops the compilation, says so and runs ``work()`` again;
    any other error is raised as it is."""
    while True:
        try:
            return (yield from work())
        except Exception as error:  # out of memory, or a network that would not compile
            if getattr(runner, "compiled", None) is not None and not is_out_of_memory(error):
                message = runner.drop_compile(error)  # the same work, without torch.compile
                notices.append(message)
                yield checkpoint(Notice(message, level="warning"))
                continue
            if not is_out_of_memory(error):
                raise
            if state.device.type == "cuda":
                torch.cuda.empty_cache()
            if state.batch_size > 1:
                state.batch_size //= 2
                message = f"out of memory: retrying with batch size {state.batch_size}"
            elif state.tile_size // 2 >= max(MIN_TILE, 2 * params.overlap + UNET_MULTIPLE):
                state.tile_size //= 2
                message = f"out of memory: retrying with tiles of {state.tile_size} px"
            elif state.device.type != "cpu":
                state.device = torch.device("cpu")
                runner.move_to(state.device)
                message = "out of memory on the GPU: continuing on the CPU"
            else:
                raise CellsegError(
                    "out of memory even on the CPU with batch size 1 and the smallest tiles; "
                    "close other programs or process a smaller region"
                ) from None
            notices.append(message)
            yield checkpoint(Notice(message, level="warning"))


def run_plane(
    runner: ModelRunner,
    x: np.ndarray,
    params: PredictParams,
    state: FallbackState,
    checkpoint,
    plane_number: int,
    n_planes: int,
) -> Generator[Event, None, Any]:
    height, width = x.shape[-2:]
    strategy = family_part(runner.card.family, "inference")
    tile_size, overlap = strategy.tile_geometry(runner.card, state.tile_size, params.overlap)
    multiple = _even_tiles(runner.card)  # U-Net: even tiles; else fixed
    tiles = plan_tiles((height, width), tile_size, overlap, multiple=multiple)
    batches = [tiles[i : i + state.batch_size] for i in range(0, len(tiles), state.batch_size)]
    message = f"plane {plane_number + 1}/{n_planes}" if n_planes > 1 else ""
    return (yield from strategy.run_tiles(runner, x, batches, overlap, params, checkpoint, message))
