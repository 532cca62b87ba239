"""Reading one plane of a large (memory-mapped or lazy) image for block-wise inference.

Region reads that say where a damaged file failed, the whole plane's normalisation made
independent of the crop it is applied to, and releasing a memory map's pages once a block is
done.
"""

from __future__ import annotations

import contextlib
import math
import mmap
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError
from napari_cellseg.inference.preprocess import iter_planes
from napari_cellseg.inference.stitch import Block
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.normalise import (
    as_channels_first,
    map_channels,
)
from napari_cellseg.models.percentile import PERCENTILE_SAMPLE_PIXELS

__all__ = [
    "check_dtype",
    "plane_normalisation",
    "planes",
    "read_pixels",
    "read_region",
    "release_pages",
]

#: Rows and columns read at a time by the min/max pass of :func:`plane_normalisation`.
MINMAX_READ_SIZE = 2048


def _mapped(crop: np.ndarray, card: ModelCard, channels: Sequence[int] | None) -> np.ndarray:
    """Channels-first float32 model channels of an image crop (values not rescaled)."""
    data = map_channels(
        as_channels_first(np.asarray(crop)), card.input_channels, card.channel_handling, channels
    )
    return data.astype(np.float32, copy=False)


def plane_normalisation(
    plane: np.ndarray,
    card: ModelCard,
    channels: Sequence[int] | None = None,
    *,
    block_size: int = MINMAX_READ_SIZE,
) -> Mapping[str, Any]:
    """The card's normalisation made independent of the crop it is applied to.

    ``percentile`` and ``minmax`` depend on the whole plane: they become ``range`` with the
    plane's values (percentiles from the same strided subsample :func:`normalise` uses on a
    whole plane, so the result equals whole-plane processing; min and max from a pass over
    blocks). The other methods work pixel by pixel and are returned unchanged.
    """
    norm = dict(card.normalisation)
    method = norm.get("method")
    height, width = plane.shape[:2]
    if method == "percentile":
        step = math.ceil(math.sqrt(height * width / PERCENTILE_SAMPLE_PIXELS))
        sample = _mapped(
            read_pixels(plane, (slice(None, None, step),) * 2, "the image"), card, channels
        )
        low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        if not 0.0 <= low < high <= 100.0:
            raise CellsegError(
                f"percentile normalisation needs 0 <= low < high <= 100, got {low}, {high}"
            )
        stats = [np.percentile(c, (low, high)) for c in sample]
        clip = bool(norm.get("clip", True))
    elif method == "minmax":
        lo = np.full(card.input_channels, np.inf)
        hi = np.full(card.input_channels, -np.inf)
        for y in range(0, height, block_size):
            for x in range(0, width, block_size):
                region = (slice(y, y + block_size), slice(x, x + block_size))
                part = _mapped(
                    read_pixels(plane, region, f"the block at ({y}, {x})"), card, channels
                )
                lo = np.minimum(lo, part.reshape(len(part), -1).min(axis=1))
                hi = np.maximum(hi, part.reshape(len(part), -1).max(axis=1))
                release_pages(plane)
        stats, clip = list(zip(lo, hi, strict=True)), False
    else:
        return norm
    return {
        "method": "range",
        "lo": [float(s[0]) for s in stats],
        "hi": [float(s[1]) for s in stats],
        "clip": clip,
        "invert": bool(norm.get("invert", False)),
    }


def release_pages(array: Any) -> None:
    """Drop a memory-mapped array's pages from this process's memory (they stay on disk).

    Pages read from a memory map count as the process's memory until the kernel evicts
    them; after a block is done they are not needed again. No-op for other arrays.
    """
    base = array
    while base is not None:
        handle = getattr(base, "_mmap", None)
        if isinstance(handle, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):  # closed, or not supported
                handle.madvise(mmap.MADV_DONTNEED)
            return
        base = getattr(base, "base", None)


def read_pixels(plane: Any, key: Any, where: str) -> np.ndarray:
    """``plane[key]`` as a numpy array; a failed read (a damaged file) says where."""
    try:
        return np.array(plane[key])
    except (MemoryError, CancelledError):
        raise
    except Exception as error:  # decoding a lazily read file (zlib, tifffile, OSError…)
        raise CellsegError(
            f"could not read the pixels of {where} ({type(error).__name__}: {error}); the "
            "file is probably truncated or damaged: copy or export it again"
        ) from error


def read_region(plane: Any, block: Block) -> np.ndarray:
    where = f"rows {block.ey0}-{block.ey1}, columns {block.ex0}-{block.ex1}"
    return read_pixels(plane, block.region, where)


def check_dtype(dtype: np.dtype) -> np.dtype:
    """The type to check shapes with (floats stand in as uint8: no finiteness pass)."""
    return np.dtype(np.uint8) if np.dtype(dtype).kind == "f" else np.dtype(dtype)


def planes(image: Any, axes: str) -> Iterator[tuple[tuple[int, ...], Any]]:
    """``iter_planes`` for numpy arrays; a lazy single-plane array (zarr) is passed as is."""
    if isinstance(image, np.ndarray):
        yield from iter_planes(image, axes)
    elif axes in ("YX", "YXS", "YXC"):
        yield (), image
    else:
        raise CellsegError(
            f"a lazily read image with axes {axes} cannot be segmented block by block; "
            "only single planes (YX, or YX with channels last) can; save it as an "
            "uncompressed TIFF (it is then memory-mapped) or split it into planes"
        )
