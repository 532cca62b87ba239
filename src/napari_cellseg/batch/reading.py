"""Reading one batch input safely: refusing lying headers and huge files before reading.

Broken links, link loops and non-regular files are refused; a TIFF whose header declares
more raw data than the file holds, or more than the free memory, is refused before anything
is allocated; large uncompressed TIFFs are memory-mapped and large compressed 2-D ones are
read lazily through tifffile's zarr interface. Everything else goes to
:func:`napari_cellseg.io.images.read_image`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np

from napari_cellseg.errors import ImageReadError
from napari_cellseg.io.images import ImageData, apply_axes, read_image
from napari_cellseg.io.slides import SlideOptions, is_slide, read_slide

__all__ = ["DEFAULT_MEMMAP_PIXELS", "read_input"]

DEFAULT_MEMMAP_PIXELS = 1 << 26
_TIFF_SUFFIXES = (".tif", ".tiff")


def _check_source(path: Path) -> None:
    """Clear errors for links that lead nowhere and for things that are not files."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ImageReadError(
                    path, "is a symbolic link loop (links pointing at each other); fix the link"
                ) from None
            raise ImageReadError(
                path,
                f"is a broken symbolic link (its target {os.readlink(path)} does not exist)",
            ) from None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # read_image says "file not found"
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise ImageReadError(
            path, "is not a regular file (a named pipe, socket or device); only images are read"
        )


def _size(n: float) -> str:
    """Bytes in words: ``_size(4e10) == '40.0 GB'``."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


def _check_pillow_header(path: Path) -> None:
    """Refuse PNG/JPEG/BMP files whose header claims a decompression-bomb size."""
    from PIL import Image

    try:
        with Image.open(path):
            pass
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            path,
            f"refused to decode: {error} If the image is genuine, save it as an uncompressed "
            "TIFF (large TIFFs are memory-mapped)",
        ) from None
    except Exception:  # read_image reports damaged files with a clear message
        return


def _tiff_plan(path: Path, memmap_pixels: int) -> str:
    """Check a TIFF's declared size before reading: ``"memmap"``, ``"lazy"`` or ``"read"``.

    Above ``memmap_pixels``, an uncompressed contiguous TIFF is memory-mapped and a
    compressed one whose axes are Y, X (and samples last) is read lazily, chunk by chunk,
    through tifffile's zarr interface; everything else is read whole.
    """
    import psutil
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            offset = series.dataoffset
            axes = series.axes
            page = series.keyframe  # a lazy read needs every declared chunk to be present
            chunks_complete = len(series.pages) == 1 and len(page.dataoffsets) == int(
                np.prod(page.chunked)
            )
    except Exception:  # read_image reports damaged files with a clear message
        return "read"
    n_pixels = int(np.prod(shape, dtype=np.float64))
    if n_pixels == 0:
        return "read"  # read_image: "image has an empty dimension"
    nbytes = n_pixels * dtype.itemsize
    size = path.stat().st_size
    if offset is not None and offset + nbytes > size:
        raise ImageReadError(
            path,
            f"the header declares {' x '.join(map(str, shape))} {dtype} pixels "
            f"({_size(nbytes)} of raw data) but the file holds {_size(size)}: it is truncated or "
            "its header is damaged; copy or export it again",
        )
    if offset is not None and n_pixels > memmap_pixels:
        return "memmap"
    if offset is None and n_pixels > memmap_pixels and axes in _LAZY_AXES and chunks_complete:
        return "lazy"
    available = psutil.virtual_memory().available
    if nbytes > available:
        raise ImageReadError(
            path,
            f"the header declares {' x '.join(map(str, shape))} {dtype} pixels, which need "
            f"{_size(nbytes)} of memory but only {_size(available)} is available; save it "
            "uncompressed (it is then memory-mapped) or split it into smaller images",
        )
    return "read"


def _memmap_tiff(path: Path) -> ImageData:
    import tifffile

    from napari_cellseg.io.images import tiff_image_data  # the reader's own rules
    from napari_cellseg.io.pixel_size import tiff_pixel_size

    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        pixel_size = tiff_pixel_size(tif)
    return tiff_image_data(path, tifffile.memmap(path, series=0, mode="r"), axes, pixel_size)


_LAZY_AXES = ("YX", "YXS")


def _lazy_tiff(path: Path) -> ImageData:
    """A compressed TIFF as a read-only zarr array: pixels are decoded when sliced."""
    import tifffile
    import zarr

    from napari_cellseg.io.images import check_array
    from napari_cellseg.io.pixel_size import tiff_pixel_size

    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        pixel_size = tiff_pixel_size(tif)
    data = zarr.open_array(tifffile.imread(path, aszarr=True, series=0), mode="r")
    check_array(path, data, axes)
    return ImageData(data, axes, path, pixel_size)


def read_input(
    path: str | os.PathLike[str],
    *,
    memmap_pixels: int = DEFAULT_MEMMAP_PIXELS,
    axes: str | None = None,
    slide: SlideOptions | None = None,
) -> ImageData:
    """Read one input image, guarding against lying headers and huge files.

    Whole-slide pyramids (SVS, NDPI, SCN, pyramidal TIFF) and OME-Zarr stores are read
    lazily: the level ``slide`` asks for (:func:`~napari_cellseg.io.slides.read_slide`).

    Like :func:`napari_cellseg.io.images.read_image`, plus: broken links, link loops and
    non-regular files are refused; a TIFF whose header declares more raw data than the file
    holds, or more than the free memory, is refused before anything is allocated; an
    uncompressed TIFF larger than `memmap_pixels` is memory-mapped (read lazily by the OS),
    and a compressed 2-D (or RGB) one becomes a zarr array decoded chunk by chunk.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    memmap_pixels : int
        Pixel count above which uncompressed, contiguous TIFFs are memory-mapped.
    axes : str, optional
        The user's axes for the file's own order (``--axes``; see
        :func:`~napari_cellseg.io.images.apply_axes`).
    slide : SlideOptions, optional
        The pyramid level to read (``--level``, ``--pixel-size``, ``--magnification``);
        level 0 when omitted. Ignored for images that are not pyramids.

    Returns
    -------
    ImageData

    Raises
    ------
    ImageReadError
        With a one-line message naming the file and the problem.
    """
    p = Path(path)
    _check_source(p)
    try:
        if is_slide(p):
            return apply_axes(read_slide(p, slide)[0], axes)
        if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES:
            plan = _tiff_plan(p, memmap_pixels)
            if plan == "memmap":
                return apply_axes(_memmap_tiff(p), axes)
            if plan == "lazy":
                return apply_axes(_lazy_tiff(p), axes)
        elif p.is_file() and p.stat().st_size > 0:
            _check_pillow_header(p)
        return apply_axes(read_image(p), axes)
    except MemoryError:
        raise ImageReadError(
            p, "not enough memory to read it; close other programs or split the image"
        ) from None
