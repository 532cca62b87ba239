"""One plane through the network, tile batch by tile batch, with the out-of-memory fallback.

Used by :func:`napari_cellseg.inference.planes.iter_predict_planes`: the family's tile
runner (:func:`~napari_cellseg.families.family_part`) runs the plane's tiles; on
out-of-memory the batch is halved, then the tile, then the run goes on on the CPU, each
step said in a :class:`~napari_cellseg.events.Notice`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, Progress
from napari_cellseg.families import family_part
from napari_cellseg.inference.model_runner import ModelRunner, is_out_of_memory
from napari_cellseg.inference.tiling import plan_tiles
from napari_cellseg.inference.unet_strategy import UNET_MULTIPLE
from napari_cellseg.params import PredictParams

Event = Progress | Notice
#: The smallest tile the fallback halves down to.
MIN_TILE = 64


@dataclass
class FallbackState:
    batch_size: int
    tile_size: int
    device: torch.device


def run_plane_with_fallback(
    runner, x, params, state, checkpoint, plane_number, n_planes, notices
) -> Generator[Event, None, Any]:
    """Run one plane; on out-of-memory halve the batch, then the tile, then use the CPU."""
    while True:
        try:
            return (
                yield from run_plane(runner, x, params, state, checkpoint, plane_number, n_planes)
            )
        except Exception as error:  # only out-of-memory is recovered
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
    multiple = getattr(strategy, "EVEN_TILES", None)  # U-Net: even tiles; else fixed
    tiles = plan_tiles((height, width), tile_size, overlap, multiple=multiple)
    batches = [tiles[i : i + state.batch_size] for i in range(0, len(tiles), state.batch_size)]
    message = f"plane {plane_number + 1}/{n_planes}" if n_planes > 1 else ""
    return (yield from strategy.run_tiles(runner, x, batches, overlap, params, checkpoint, message))
