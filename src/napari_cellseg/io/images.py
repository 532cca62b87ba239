"""Reading images and label images, writing label images.

Images are read with :mod:`tifffile` (TIFF, OME-TIFF, ImageJ TIFF) or :mod:`imageio` (PNG,
JPEG, BMP). Every expected failure raises :class:`~napari_cellseg.errors.ImageReadError`
or :class:`~napari_cellseg.errors.ImageWriteError` whose message names the file and says
what to do. Label images are written atomically as zlib-compressed uint16/uint32 TIFF.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from napari_cellseg.errors import ImageReadError, ImageWriteError
from napari_cellseg.io.atomic import atomic_write
from napari_cellseg.io.files import check_destination, label_dtype, write_problem
from napari_cellseg.io.pixel_size import tiff_pixel_size

__all__ = [
    "LABEL_SUFFIXES",
    "SUPPORTED_IMAGE_SUFFIXES",
    "ImageData",
    "check_array",
    "read_image",
    "read_labels",
    "write_labels",
]

SUPPORTED_IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
"""File name endings :func:`read_image` accepts (case-insensitive; ``.ome.tif`` included)."""

LABEL_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")
"""File name endings :func:`read_labels` accepts."""

_TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_DIMS = 5
# tifffile axis letters -> ours ("TZCYXS"). Unknown page axes (Q, I) become Z; others are
# placed on the first free letter of _FALLBACK_AXES.
_AXIS_MAP = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "S": "S", "E": "C"}
_FALLBACK_AXES = "ZTC"


@dataclass(frozen=True)
class ImageData:
    """An image as read from disk.

    Attributes
    ----------
    data : numpy.ndarray
        Pixel data, dtype as stored (uint8, uint16, float32, ...).
    axes : str
        One letter per dimension of `data`, from ``"TZCYXS"`` (``S`` = RGB/RGBA samples),
        e.g. ``"YX"``, ``"YXS"``, ``"ZYX"``, ``"TCYX"``.
    path : pathlib.Path or None
        The file it came from.
    pixel_size_um : tuple of float or None
        Pixel size (y, x) in micrometres when the file records it.
    stored_samples_axis : int or None
        Where the file stores the RGB samples when the reader moved them last (planar RGB),
        so that axes a user gives can refer to the file's own order (:func:`apply_axes`).
    resample : float
        Factor the pixels are resampled by before the network (a slide level chosen for a
        pixel size it does not have exactly: :mod:`napari_cellseg.io.slides`); 1 otherwise.
    """

    data: np.ndarray
    axes: str
    path: Path | None = None
    pixel_size_um: tuple[float, float] | None = None
    stored_samples_axis: int | None = None
    resample: float = 1.0


def apply_axes(image: ImageData, axes: str | None) -> ImageData:
    """``image`` with the axes a user gave, in the order the file stores its dimensions.

    Parameters
    ----------
    image : ImageData
        As read (planar RGB has its samples moved last).
    axes : str or None
        Axis letters for the file's own order (``--axes``); None keeps ``image`` as read.

    Returns
    -------
    ImageData
        The same pixels, in stored order, with ``axes`` (checked later, against the shape).

    Examples
    --------
    >>> planar = ImageData(np.zeros((8, 6, 3)), "YXS", stored_samples_axis=0)
    >>> apply_axes(planar, "cyx").data.shape, apply_axes(planar, "cyx").axes
    ((3, 8, 6), 'CYX')
    """
    if not axes:
        return image
    data = image.data
    if image.stored_samples_axis is not None:
        data = np.moveaxis(data, -1, image.stored_samples_axis)
    return ImageData(data, axes.upper(), image.path, image.pixel_size_um, resample=image.resample)


def _supported_list(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffixes)


def _check_file(path: Path, suffixes: tuple[str, ...]) -> None:
    """Raise a clear error for a missing, non-file, empty or unsupported path."""
    if not path.exists():
        raise ImageReadError(path, "file not found; check the path and the file name")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file; choose a file inside it")
    if path.suffix.lower() not in suffixes:
        kind = f"'{path.suffix}'" if path.suffix else "without an extension"
        raise ImageReadError(
            path,
            f"unsupported file type {kind}; supported types are {_supported_list(suffixes)}",
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes); copy or export it again")


# tifffile logs (rather than raises) these when pages or data are missing at the end of a file.
_DAMAGE_HINTS = (
    "invalid page offset",
    "corrupted",
    "failed to reshape",
    "truncat",
    "failed to read",
)


class _TiffErrorLog(logging.Handler):
    """Collects this thread's tifffile ERROR records that point at truncation or corruption."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and any(h in message.lower() for h in _DAMAGE_HINTS):
            self.messages.append(message)


@contextlib.contextmanager
def _tiff_errors() -> Iterator[_TiffErrorLog]:
    handler = _TiffErrorLog()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def _map_axes(path: Path, tiff_axes: str) -> str:
    """Translate tifffile axis letters to ours (``"TZCYXS"``)."""
    out: list[str] = []
    for letter in tiff_axes.upper():
        mapped = _AXIS_MAP.get(letter)
        if mapped is None or mapped in out:
            mapped = next((a for a in _FALLBACK_AXES if a not in out and a not in tiff_axes), "")
        if not mapped:
            raise ImageReadError(
                path, f"cannot interpret the TIFF axes '{tiff_axes}'; save it as T, Z, C, Y, X"
            )
        out.append(mapped)
    return "".join(out)


def check_array(path: Path, data: np.ndarray, axes: str) -> None:
    """Reject empty, 1-D, more than 5-D and non-numeric images.

    Parameters
    ----------
    path : pathlib.Path
        The file the array came from (named in the message).
    data : numpy.ndarray
        The pixels (any array with ``shape``, ``ndim`` and ``dtype``).
    axes : str
        The file's axis letters (named in the message).

    Raises
    ------
    ImageReadError
        If the image has an empty dimension, fewer than 2 or more than 5 dimensions, or a
        non-numeric pixel type.
    """
    shape = data.shape
    if 0 in shape:
        raise ImageReadError(path, f"image has an empty dimension (shape {shape}); no pixels")
    if data.ndim < 2:
        raise ImageReadError(path, f"not a 2-D image (shape {shape}); save it as an image")
    if data.ndim > _MAX_DIMS:
        raise ImageReadError(
            path,
            f"image has {data.ndim} dimensions (axes {axes}, shape {shape}); at most "
            f"{_MAX_DIMS} are supported: split it into smaller files (e.g. one per time point)",
        )
    if data.dtype.kind not in "biuf":
        raise ImageReadError(path, f"unsupported pixel type {data.dtype}; save as integer/float")


def _read_tiff(path: Path) -> ImageData:
    try:
        with _tiff_errors() as log, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "the TIFF file holds no image; export it again")
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            pixel_size = tiff_pixel_size(tif)
    except (ImageReadError, MemoryError):
        raise
    except tifffile.TiffFileError as exc:
        raise ImageReadError(
            path, f"not a valid TIFF file ({exc}); check that it really is an image"
        ) from exc
    except Exception as exc:  # damaged files make tifffile raise many different types
        raise ImageReadError(
            path, f"TIFF file is truncated or damaged ({exc}); copy or export it again"
        ) from exc
    if log.messages:
        raise ImageReadError(
            path,
            f"TIFF file is truncated or damaged ({log.messages[0]}); copy or export it again",
        )
    return tiff_image_data(path, data, axes, pixel_size)


def tiff_image_data(
    path: Path, data: np.ndarray, tiff_axes: str, pixel_size: tuple[float, float] | None
) -> ImageData:
    """Check a TIFF series' array and give it our axes; planar RGB gets its samples last."""
    check_array(path, data, tiff_axes)
    ours = _map_axes(path, tiff_axes)
    stored = None
    if "S" in ours and not ours.endswith("S"):  # planar RGB: samples last, as everywhere else
        stored = ours.index("S")
        data = np.moveaxis(data, stored, -1)
        ours = ours.replace("S", "") + "S"
    return ImageData(data, ours, path, pixel_size, stored)


def _read_pillow(path: Path) -> ImageData:
    try:
        data = iio.imread(path, plugin="pillow", index=0)
    except Exception as exc:  # Pillow raises many types for bad or truncated files
        fmt = path.suffix.lstrip(".").upper()
        raise ImageReadError(
            path,
            f"cannot read this {fmt} file: it is truncated, damaged or not an image ({exc}); "
            "copy or export it again",
        ) from exc
    data = np.asarray(data)
    axes = "YXS" if data.ndim == 3 and data.shape[-1] in (2, 3, 4) else "ZYX"[-data.ndim :]
    return ImageData(data, axes, path, None)


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Read a microscopy or histology image.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF (also OME-TIFF, ImageJ TIFF, multi-page stacks), PNG, JPEG or BMP file.

    Returns
    -------
    ImageData
        Pixel data as stored, its axes (letters from ``"TZCYXS"``), the path and the pixel
        size in micrometres when the file records it.

    Raises
    ------
    ImageReadError
        If the file is missing, a folder, empty, truncated, not an image, of an unsupported
        type, has a zero-size dimension or more than 5 dimensions.
    """
    p = Path(path)
    _check_file(p, SUPPORTED_IMAGE_SUFFIXES)
    image = _read_tiff(p) if p.suffix.lower() in _TIFF_SUFFIXES else _read_pillow(p)
    check_array(p, image.data, image.axes)
    return image


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an instance label image (0 = background, 1..N = objects).

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF or PNG file holding a 2-D label image or a 3-D stack of them.

    Returns
    -------
    numpy.ndarray
        The labels as uint16, or uint32 when the largest label exceeds 65535.

    Raises
    ------
    ImageReadError
        If the file cannot be read (see :func:`read_image`), is not 2-D/3-D, has colour
        channels, non-integer or negative values, or labels larger than 2**32 - 1.
    """
    p = Path(path)
    _check_file(p, LABEL_SUFFIXES)
    image = read_image(p)
    data = image.data
    if image.axes.endswith("S"):
        samples = data[..., :3] if data.shape[-1] >= 3 else data[..., :1]
        if not np.all(samples == samples[..., :1]):
            raise ImageReadError(
                p, "label image has colour channels; save labels as a single-channel image"
            )
        data = samples[..., 0]
    if data.ndim not in (2, 3):
        raise ImageReadError(
            p, f"label image must be 2-D or a 3-D stack, not {data.ndim}-D (shape {data.shape})"
        )
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise ImageReadError(
                p, "label image has non-integer values; save labels as an integer image"
            )
    elif data.dtype.kind not in "biu":
        raise ImageReadError(p, f"label image has unsupported type {data.dtype}")
    if data.dtype.kind != "b" and data.size and data.min() < 0:
        raise ImageReadError(p, "label image has negative values; labels must be 0 or positive")
    max_value = int(data.max()) if data.size else 0
    if max_value > np.iinfo(np.uint32).max:
        raise ImageReadError(p, f"label {max_value} is too large; at most 4294967295 are supported")
    return data.astype(label_dtype(max_value), copy=False)


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    *,
    pixel_size_um: tuple[float, float] | None = None,
    axes: str | None = None,
) -> Path:
    """Write an instance label image as a zlib-compressed TIFF, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.tif``/``.tiff`` file; its folder must exist. An existing file is
        replaced only once the new one is completely written.
    labels : numpy.ndarray
        2-D label image, or a stack with up to two leading T/Z axes; integer (or bool),
        non-negative.
    pixel_size_um : tuple of float, optional
        Pixel size (y, x) in micrometres, stored as the TIFF resolution (pixels per cm).
    axes : str, optional
        Axis letters of ``labels`` stored in the file (``"TYX"``, ``"TZYX"``...); by default
        ``YX``, ``ZYX`` or ``TZYX`` by dimension.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ImageWriteError
        If the labels are invalid, the name is not a TIFF name, the folder is missing or not
        writable, or the disk is full. No partial or temporary file is left behind.
    """
    p = Path(path)
    arr = np.asarray(labels)
    if p.suffix.lower() not in _TIFF_SUFFIXES:
        raise ImageWriteError(p, "labels are saved as TIFF; use a name ending in .tif or .tiff")
    if arr.ndim not in (2, 3, 4) or 0 in arr.shape:
        raise ImageWriteError(
            p, f"labels must be a non-empty 2-D image or a stack of them, got shape {arr.shape}"
        )
    axes = axes or ("YX", "ZYX", "TZYX")[arr.ndim - 2]
    if len(axes) != arr.ndim or not axes.endswith("YX") or set(axes[:-2]) - set("TZ"):
        raise ImageWriteError(p, f"axes {axes!r} do not fit labels of shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise ImageWriteError(p, f"labels must be integers, got {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ImageWriteError(p, "labels must be 0 or positive, found negative values")
    max_value = int(arr.max())
    if max_value > np.iinfo(np.uint32).max:
        raise ImageWriteError(p, f"label {max_value} is too large; at most 4294967295 supported")
    resolution = None
    if pixel_size_um is not None:
        sy, sx = (float(v) for v in pixel_size_um)
        if not (np.isfinite(sy) and np.isfinite(sx) and sy > 0 and sx > 0):
            raise ImageWriteError(p, f"invalid pixel size {pixel_size_um}; must be positive")
        resolution = (1e4 / sx, 1e4 / sy)
    check_destination(p, ".tif")
    out = arr.astype(label_dtype(max_value), copy=False)
    try:
        with atomic_write(p, "wb") as fh:
            tifffile.imwrite(
                fh,
                out,
                photometric="minisblack",
                compression="zlib",
                resolution=resolution,
                resolutionunit=tifffile.RESUNIT.CENTIMETER if resolution else None,
                metadata={"axes": axes},
            )
    except OSError as exc:
        raise ImageWriteError(p, write_problem(exc)) from exc
    return p
