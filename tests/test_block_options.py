"""BlockOptions: the block-by-block settings, checked once when they are made."""

from __future__ import annotations

import dataclasses

import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.params import BlockOptions


def test_defaults_are_2048_px_blocks_with_a_256_px_halo_above_4096_squared() -> None:
    options = BlockOptions()
    assert (options.block_size, options.halo, options.block_pixels) == (2048, 256, 4096 * 4096)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.halo = 0  # type: ignore[misc]


@pytest.mark.parametrize("halo", [0, 64, 128])
def test_edge_values_are_accepted(halo: int) -> None:
    assert BlockOptions(block_size=128, halo=halo, block_pixels=1).halo == halo
    assert BlockOptions(block_size=64, halo=64).block_size == 64
    assert BlockOptions(block_size=32768).block_size == 32768


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"block_size": 63}, "block size 63 and halo 256 are out of range"),
        ({"block_size": 32769}, "block size 32769 and halo 256 are out of range"),
        ({"halo": -1}, "block size 2048 and halo -1 are out of range"),
        ({"block_size": 128, "halo": 129}, "a halo from 0 to the block size"),
        ({"block_pixels": 0}, "block pixels must be at least 1, got 0"),
        ({"block_size": 1024.5}, "must be whole numbers"),
        ({"halo": True}, "must be whole numbers"),
        ({"block_pixels": "many"}, "must be whole numbers"),
    ],
)
def test_bad_values_raise_one_line(kwargs: dict, needle: str) -> None:
    with pytest.raises(CellsegError, match=needle) as info:
        BlockOptions(**kwargs)
    assert "\n" not in str(info.value)
