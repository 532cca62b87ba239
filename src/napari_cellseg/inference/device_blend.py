"""U-Net tiles blended on the network's device: the plane goes up once, the map comes down once.

The host path (:func:`napari_cellseg.inference.unet_strategy.run_tiles` with its host tile
source and :class:`~napari_cellseg.inference.tiling.TileBlender`) copies every batch of
tiles to the device and every batch of probabilities back, then blends them in numpy on the
CPU. On a GPU that costs more than the network itself: on the lent H200 (session 16) that
stage took 0.034 s on a 1024² DSB mosaic against 0.010 s with :class:`DeviceTiles`, the
same loop with this module's tile source. Here the plane is copied to the device once
(padded at its bottom and right edges so that every tile's padded input is a slice of it),
tiles are sliced, augmented, run and blended with the same raised-cosine windows on the
device, and the blended ``(C, Y, X)`` map is copied back once.

The result is the host path's (the same windows, the same float32 sums in the same order;
on a GPU up to its own rounding): ``tests/inference/test_device_blend.py`` runs both on the
CPU and compares maps and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from napari_cellseg.inference.tiling import Tile, TileBlender
from napari_cellseg.inference.transfer import HostMap, to_device

__all__ = ["DeviceTileBlender", "DeviceTiles", "plane_padding", "tiles_cover"]


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
        self._tiles: list[Tile] = []  # to check coverage on the host, without waiting

    def add(self, tile: Tile, values: Any) -> None:
        super().add(tile, values)
        self._tiles.append(tile)

    def _covered(self) -> bool:
        """Coverage from the tiles' rectangles (windows are > 0 everywhere), so that the
        host does not wait for the device to read the weights' minimum."""
        return tiles_cover(self.shape, self._tiles)

    def _zeros(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def _accumulator_window(self, window: np.ndarray) -> torch.Tensor:
        return to_device(window.astype(np.float32), self.device)

    def _values(self, values: Any) -> Any:
        return values

    def result(self) -> np.ndarray:
        """The blended ``(C, H, W)`` float32 map, copied to the host once."""
        return super().result().cpu().numpy()

    def fetch_later(self) -> HostMap:
        """The blended map's copy to the host, queued without waiting for it
        (:class:`~napari_cellseg.inference.transfer.HostMap`)."""
        return HostMap(super().result())


class DeviceTiles:
    """A plane's tiles cut from one padded copy of it on the runner's device.

    The tile source of :func:`~napari_cellseg.inference.unet_strategy.run_tiles` on a GPU:
    :meth:`stack` slices a batch's padded tiles from the plane there, :meth:`copy` runs one
    augmented copy of them and leaves the probabilities there, :meth:`blender` blends them
    there (:class:`DeviceTileBlender`). Build it with :meth:`of`.
    """

    def __init__(self, runner: Any, plane: torch.Tensor, multiple: int) -> None:
        self.runner = runner
        self.plane = plane
        self.multiple = multiple

    @classmethod
    def of(
        cls, runner: Any, x: np.ndarray, batches: list[list[Tile]], multiple: int
    ) -> DeviceTiles | None:
        """The plane ``x`` copied to ``runner.device`` once, padded so that every tile's padded
        input is a slice of it; ``None`` when that cannot be (:func:`plane_padding`) or a batch
        mixes tile shapes: the host path then runs."""
        padding = plane_padding(x.shape[-2:], [t for b in batches for t in b], multiple)
        if padding is None or any(len({t.shape for t in batch}) > 1 for batch in batches):
            return None
        padded = np.ascontiguousarray(_pad_plane(x, padding), dtype=np.float32)
        return cls(runner, to_device(padded, runner.device), multiple)  # pinned on CUDA

    def blender(self, channels: int, shape: tuple[int, int], overlap: int) -> DeviceTileBlender:
        return DeviceTileBlender(channels, shape, overlap, self.runner.device)

    def stack(self, batch: Sequence[Tile]) -> torch.Tensor:
        """The batch's padded tiles, ``(B, C, H, W)``, sliced from the plane on the device."""
        th, tw = batch[0].shape
        ph, pw = th + (-th % self.multiple), tw + (-tw % self.multiple)
        return torch.stack([self.plane[:, t.y0 : t.y0 + ph, t.x0 : t.x0 + pw] for t in batch])

    def copy(self, stacked: torch.Tensor, index: int) -> torch.Tensor:
        """Probabilities of augmented copy ``index``, left on the device."""
        return self.runner.unet_copy_on_device(stacked, index)

    def result(self, blender: DeviceTileBlender) -> np.ndarray | HostMap:
        """The blended map on the host, or its copy still under way where the runner's
        ``fetch_later`` says so (a stack's planes on CUDA: :mod:`.transfer`)."""
        if getattr(self.runner, "fetch_later", False):
            return blender.fetch_later()
        return blender.result()

    def done(self, n_tiles: int) -> None:
        """Nothing to hand back: the plane and the sums go with this object."""


def tiles_cover(shape: tuple[int, int], tiles: Sequence[Tile]) -> bool:
    """Whether the union of ``tiles`` covers every pixel of a plane of ``shape``, checked band
    by band between the tiles' row edges (no plane-sized mask: planes can be whole slides).

    >>> tiles_cover((4, 6), [Tile(0, 0, 4, 4), Tile(0, 3, 4, 6)])
    True
    >>> tiles_cover((4, 6), [Tile(0, 0, 4, 3), Tile(0, 4, 4, 6)])  # column 3 missing
    False
    >>> tiles_cover((4, 6), [Tile(0, 0, 2, 6), Tile(1, 0, 3, 6)])  # row 3 missing
    False
    """
    height, width = shape
    edges = sorted({0, height, *(t.y0 for t in tiles), *(t.y1 for t in tiles)})
    for top, bottom in pairwise(edges):
        if top >= height or bottom <= 0:
            continue
        spans = sorted((t.x0, t.x1) for t in tiles if t.y0 <= top and t.y1 >= bottom)
        reach = 0
        for x0, x1 in spans:
            if x0 > reach:
                return False
            reach = max(reach, x1)
        if reach < width:
            return False
    return True


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
