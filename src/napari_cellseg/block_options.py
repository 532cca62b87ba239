"""Block-by-block options: segmenting planes too large for memory (``BlockOptions``).

On floor 1 beside ``fields`` and ``diameters``; ``napari_cellseg.params`` re-exports it with
the other parameter dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_cellseg.errors import CellsegError

__all__ = ["BlockOptions"]


@dataclass(frozen=True)
class BlockOptions:
    """Segmenting planes too large for memory block by block (batch, CLI, viewer).

    Attributes
    ----------
    block_size : int
        Edge of a block in pixels, 64 to 32768.
    halo : int
        Margin read around each block, 0 to ``block_size``; objects larger than the halo
        may be cut.
    block_pixels : int
        Planes with more pixels than this (default 4096 x 4096) go block by block.

    Examples
    --------
    >>> BlockOptions(block_size=1024, halo=128).block_pixels
    16777216
    >>> BlockOptions(block_size=32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: block size 32 and halo 256 are out of range: ...
    """

    block_size: int = 2048
    halo: int = 256
    block_pixels: int = 1 << 24

    def __post_init__(self) -> None:
        from numbers import Integral

        values = (self.block_size, self.halo, self.block_pixels)
        if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
            raise CellsegError(
                f"block size, halo and block pixels must be whole numbers, got {values}"
            )
        if not 64 <= self.block_size <= 32768 or not 0 <= self.halo <= self.block_size:
            raise CellsegError(
                f"block size {self.block_size} and halo {self.halo} are out of range: use a "
                "block of 64 to 32768 pixels and a halo from 0 to the block size"
            )
        if self.block_pixels < 1:
            raise CellsegError(f"block pixels must be at least 1, got {self.block_pixels}")
