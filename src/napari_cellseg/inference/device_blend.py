"""U-Net tiles blended on the network's device: the plane goes up once, the map comes down once.

The host path (:func:`napari_cellseg.inference.unet_strategy.run_tiles` with
:class:`~napari_cellseg.inference.tiling.TileBlender`) copies every batch of tiles to the
device and every batch of probabilities back, then blends them in numpy on the CPU. On a
GPU that costs more than the network itself: on the lent H200 (session 14) a 1024² DSB
mosaic spent 0.09 s in that stage, of which the network's own share at its measured
98 MPix/s is about 0.01 s. Here the plane is copied to the device once (padded at its
bottom and right edges so that every tile's padded input is a slice of it), tiles are
sliced, augmented, run and blended with the same raised-cosine windows on the device, and
the blended ``(C, Y, X)`` map is copied back once.

The result is the host path's (the same windows, the same float32 sums in the same order;
on a GPU up to its own rounding): ``tests/inference/test_device_blend.py`` runs both on the
CPU and compares maps and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch

from napari_cellseg.events import Progress
from napari_cellseg.inference.tiling import Tile, TileBlender
from napari_cellseg.params import PredictParams

__all__ = ["DeviceTileBlender", "plane_padding", "run_tiles_on_device"]


def plane_padding(
    shape: tuple[int, int], tiles: Sequence[Tile], multiple: int
) -> tuple[int, int] | None:
    """Bottom/right padding of a plane after which every tile's padded input is a slice of it.

    A tile is padded (reflected, as :func:`~napari_cellseg.inference.tiling.pad_to_multiple`
    does) up to a multiple of ``multiple``. Reflecting the tile or the whole plane gives the
    same pixels when the tile touches the plane's edge on that side and the padding is
    shorter than the tile; ``None`` when some tile needs padding elsewhere (the host path
    then runs).

    >>> plane_padding((520, 696), [Tile(0, 0, 520, 384, inner_right=True),
    ...                            Tile(0, 312, 520, 696, inner_left=True)], 32)
    (24, 0)
    >>> plane_padding((100, 100), [Tile(0, 0, 50, 100)], 32) is None  # padded inside the plane
    True
    """
    height, width = shape
    need = [0, 0]
    for tile in tiles:
        for axis, (size, end, full) in enumerate(
            ((tile.shape[0], tile.y1, height), (tile.shape[1], tile.x1, width))
        ):
            pad = -size % multiple
            if pad == 0:
                continue
            if end != full or (pad >= size if size > 1 else full != 1):
                return None
            need[axis] = max(need[axis], pad)
    return need[0], need[1]


class DeviceTileBlender(TileBlender):
    """:class:`~napari_cellseg.inference.tiling.TileBlender` with its sums on a torch device.

    Parameters
    ----------
    channels : int
        Output channels C.
    shape : tuple of int
        ``(H, W)`` of the plane.
    overlap : int
        Width of the blending ramp at inner tile borders.
    device : torch.device
        Where the sums live; tiles are added as ``(C, th, tw)`` tensors there.
    """

    def __init__(
        self, channels: int, shape: tuple[int, int], overlap: int, device: torch.device
    ) -> None:
        self.device = device
        super().__init__(channels, shape, overlap)

    def _zeros(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def _accumulator_window(self, window: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(window.astype(np.float32)).to(self.device)

    def _values(self, values: Any) -> Any:
        return values

    def result(self) -> np.ndarray:
        """The blended ``(C, H, W)`` float32 map, copied to the host once."""
        return super().result().cpu().numpy()


def run_tiles_on_device(
    runner: Any,
    x: np.ndarray,
    batches: list[list[Tile]],
    overlap: int,
    params: PredictParams,
    checkpoint: Callable[[Any], Any],
    message: str,
    multiple: int,
) -> Generator[Any, None, np.ndarray | None]:
    """:func:`~napari_cellseg.inference.unet_strategy.run_tiles` with the plane on the device.

    Yields the same progress events (one per copy of a batch). Returns ``None`` without
    yielding when the tiles cannot be cut from one padded plane (:func:`plane_padding`) or a
    batch mixes tile shapes: the caller then runs the host path.
    """
    height, width = x.shape[-2:]
    padding = plane_padding((height, width), [t for b in batches for t in b], multiple)
    if padding is None or any(len({t.shape for t in batch}) > 1 for batch in batches):
        return None
    padded = _pad_plane(x, padding)
    device = runner.device
    plane = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).to(device)
    blender = DeviceTileBlender(len(runner.card.outputs), (height, width), overlap, device)
    total_copies = len(batches) * params.tta
    for done, batch in enumerate(batches, start=1):
        th, tw = batch[0].shape
        ph, pw = th + (-th % multiple), tw + (-tw % multiple)
        stacked = torch.stack([plane[:, t.y0 : t.y0 + ph, t.x0 : t.x0 + pw] for t in batch])
        probs = runner.unet_copy_on_device(stacked, 0)
        for index in range(1, params.tta):
            done_copies = (done - 1) * params.tta + index
            yield checkpoint(Progress("tiles", done_copies, total_copies, message))
            probs = probs + runner.unet_copy_on_device(stacked, index)  # (inference tensors:
        if params.tta > 1:  # no in-place updates outside inference mode)
            probs = probs / params.tta
        for tile, prob in zip(batch, probs, strict=True):
            blender.add(tile, prob[:, :th, :tw])
        yield checkpoint(Progress("tiles", done * params.tta, total_copies, message))
    return blender.result()


def _pad_plane(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """``x`` padded at its bottom/right by ``padding`` rows/columns, reflected as
    :func:`~napari_cellseg.inference.tiling.pad_to_multiple` pads a tile (edge on an axis of
    size 1).

    >>> _pad_plane(np.arange(3.0)[None], (0, 2)).tolist()
    [[0.0, 1.0, 2.0, 1.0, 0.0]]
    """
    out = x
    for axis, amount in ((x.ndim - 2, padding[0]), (x.ndim - 1, padding[1])):
        if amount:
            widths = [(0, 0)] * x.ndim
            widths[axis] = (0, amount)
            out = np.pad(out, widths, mode="edge" if out.shape[axis] == 1 else "reflect")
    return out
