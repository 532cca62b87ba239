"""Whole-slide pyramids (SVS, NDPI, SCN, pyramidal OME-TIFF) and OME-Zarr, read lazily.

:func:`open_slide` gives every level of a pyramid as a lazy dask array (chunks decoded
when sliced) with its pixel size and magnification; :func:`choose_level` picks the level
for a ``--level``, ``--pixel-size`` or ``--magnification`` request (with a resampling
factor when no level matches), and :func:`read_slide` returns that level as
:class:`~napari_cellseg.io.images.ImageData`. TIFF-based slides are read with tifffile's
zarr interface (no system library); OME-Zarr with zarr (NGFF 0.4 and 0.5 metadata).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import CellsegError, ImageReadError
from napari_cellseg.io.images import ImageData, check_array

__all__ = [
    "SLIDE_SUFFIXES",
    "Slide",
    "SlideOptions",
    "choose_level",
    "is_slide",
    "open_slide",
    "parse_pixel_size",
    "read_slide",
]

SLIDE_SUFFIXES: tuple[str, ...] = (".svs", ".ndpi", ".scn", ".bif", ".zarr")
"""Names always read as slides; a ``.tif``/``.ome.tif`` is one when it holds a pyramid."""

_TIFF_SLIDES = (".svs", ".ndpi", ".scn", ".bif", ".tif", ".tiff")
_NOT_TIFF = {".mrxs": "MIRAX", ".vsi": "Olympus VSI", ".czi": "Zeiss CZI"}
#: A level within this fraction of the asked pixel size or magnification is used as it is.
TOLERANCE = 0.05


@dataclass(frozen=True)
class SlideOptions:
    """Which level of a pyramid to segment (at most one of the three; none: level 0).

    Attributes
    ----------
    level : int or None
        The level number (0 = full resolution).
    pixel_size_um : float or None
        The pixel size (µm) to segment at: the nearest finer level, resampled when needed.
    magnification : float or None
        The objective magnification to segment at (20 for 20x), chosen the same way.
    """

    level: int | None = None
    pixel_size_um: float | None = None
    magnification: float | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.level, self.pixel_size_um, self.magnification) if v is not None]
        if len(given) > 1:
            raise CellsegError("give only one of --level, --pixel-size and --magnification")
        if self.level is not None and self.level < 0:
            raise CellsegError(f"--level must be 0 or more (0 = full resolution), not {self.level}")
        for name, value in (
            ("pixel-size", self.pixel_size_um),
            ("magnification", self.magnification),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise CellsegError(f"--{name} must be a positive number, not {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for a batch recipe)."""
        return {
            "level": self.level,
            "pixel_size_um": self.pixel_size_um,
            "magnification": self.magnification,
        }


def parse_pixel_size(text: str | None) -> float | None:
    """``"0.5um"``, ``"0.5µm"``, ``"500nm"`` or ``"0.5"`` -> micrometres.

    >>> parse_pixel_size("0.5um"), parse_pixel_size("250nm"), parse_pixel_size(None)
    (0.5, 0.25, None)
    """
    if text in (None, ""):
        return None
    raw = str(text).strip().lower().replace("\u00b5", "u").replace("\u03bc", "u")
    factor = 1e-3 if raw.endswith("nm") else 1.0
    number = raw.removesuffix("nm").removesuffix("um").removesuffix("micron").strip()
    try:
        value = float(number) * factor
    except ValueError:
        raise CellsegError(
            f"--pixel-size takes a size such as 0.5um or 500nm, not {text!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise CellsegError(f"--pixel-size must be positive, not {text!r}")
    return value


@dataclass(frozen=True)
class Slide:
    """Every level of a pyramid, largest first.

    Attributes
    ----------
    path : pathlib.Path
    levels : list of dask arrays
        Lazy, in our axis order (``YX``, ``YXS`` or ``YXC``).
    axes : str
    pixel_sizes : list of (float, float) or None
        Per level, micrometres (y, x), None when the file records no calibration.
    magnifications : list of float or None
        Per level, the objective magnification (level 0's scaled by the downsampling).
    """

    path: Path
    levels: list[Any]
    axes: str
    pixel_sizes: list[tuple[float, float] | None]
    magnifications: list[float | None]

    @property
    def downsamples(self) -> list[float]:
        """How much smaller each level is than level 0 (mean of rows and columns)."""
        h0, w0 = _yx(self.levels[0].shape, self.axes)
        out = []
        for level in self.levels:
            h, w = _yx(level.shape, self.axes)
            out.append((h0 / h + w0 / w) / 2)
        return out


def _yx(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    return shape[axes.index("Y")], shape[axes.index("X")]


def is_slide(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as a slide: a slide suffix, or a TIFF holding a pyramid."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in SLIDE_SUFFIXES or suffix in _NOT_TIFF:
        return True
    if suffix not in (".tif", ".tiff") or not p.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            return bool(tif.series) and len(tif.series[0].levels) > 1
    except Exception:  # the ordinary reader says what is wrong with a damaged file
        return False


def _lazy_levels(arrays: list[Any], axes: str, path: Path) -> tuple[list[Any], str]:
    """Dask views of ``arrays`` with single T/Z/C dropped and channels last."""
    import dask.array as da

    out_axes = "".join(a for a, n in zip(axes, arrays[0].shape, strict=True) if n > 1 or a in "YX")
    extra = [a for a in out_axes if a in "TZ"]
    if extra:
        n = arrays[0].shape[axes.index(extra[0])]
        raise ImageReadError(
            path, f"holds {n} {'time points' if extra[0] == 'T' else 'z-planes'}; slides are "
            "segmented one plane at a time: save each plane as its own file",
        )  # fmt: skip
    order = [a for a in out_axes if a in "YX"] + [a for a in out_axes if a in "CS"]
    levels = []
    for array in arrays:
        lazy = da.from_array(array, chunks=array.chunks, inline_array=True, asarray=False)
        index = tuple(slice(None) if a in out_axes else 0 for a in axes)
        lazy = lazy[index].transpose([out_axes.index(a) for a in order])
        levels.append(lazy)
    return levels, "".join(order)


def _open_tiff(path: Path) -> Slide:
    import tifffile
    import zarr

    from napari_cellseg.io.images import _map_axes, _tiff_errors
    from napari_cellseg.io.pixel_size import tiff_pixel_size

    size = path.stat().st_size
    with _tiff_errors() as log, tifffile.TiffFile(path) as tif:
        log.setLevel(logging.WARNING)  # "corrupted tag list" is only a warning
        if not tif.series:
            raise ImageReadError(path, "the TIFF file holds no image; export it again")
        series = tif.series[0]
        n_levels = len(series.levels)
        axes = _map_axes(path, series.axes)
        pixel_size = tiff_pixel_size(tif)
        magnification = None
        description = tif.pages[0].description or ""
        if description.startswith("Aperio"):
            meta = tifffile.tifffile.svs_description_metadata(description)
            if meta.get("MPP"):
                pixel_size = (float(meta["MPP"]), float(meta["MPP"]))
            magnification = float(meta["AppMag"]) if meta.get("AppMag") else None
        elif tif.is_ndpi:
            magnification = float(tif.pages[0].ndpi_tags.get("Magnification") or 0) or None
        _check_codec(path, series.keyframe.compression)
        for level in series.levels:  # every tile of every level must be present
            page = level.keyframe
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            complete = len(page.dataoffsets) == int(np.prod(page.chunked))
            if len(level.pages) == 1 and (not complete or max(ends, default=0) > size):
                raise ImageReadError(
                    path, f"pyramid level {level.shape} lacks tiles: the slide is truncated; "
                    "copy it again",
                )  # fmt: skip
    if log.messages:
        raise ImageReadError(path, f"the slide is truncated or damaged ({log.messages[0]})")
    arrays = [
        zarr.open_array(tifffile.imread(path, aszarr=True, series=0, level=i), mode="r")
        for i in range(n_levels)
    ]
    return _slide(path, arrays, axes, pixel_size, magnification)


def _check_codec(path: Path, compression: Any) -> None:
    """A clear error when the tiles' codec needs a package that is not installed."""
    import tifffile

    try:
        tifffile.TIFF.DECOMPRESSORS[compression]
    except Exception:
        name = getattr(compression, "name", str(compression))
        raise ImageReadError(
            path, f"its tiles are {name}-compressed, which needs the imagecodecs package: "
            "pip install 'napari-cellseg[slides]' (or imagecodecs)",
        ) from None  # fmt: skip


def _slide(
    path: Path,
    arrays: list[Any],
    axes: str,
    pixel_size: tuple[float, float] | None,
    magnification: float | None,
    sizes: list[tuple[float, float] | None] | None = None,
) -> Slide:
    for array in arrays:
        check_array(path, array, axes)
    levels, ours = _lazy_levels(arrays, axes, path)
    h0, w0 = _yx(levels[0].shape, ours)
    pixel_sizes: list[tuple[float, float] | None] = []
    magnifications: list[float | None] = []
    for i, level in enumerate(levels):
        h, w = _yx(level.shape, ours)
        fy, fx = h0 / h, w0 / w
        if sizes is not None:
            pixel_sizes.append(sizes[i])
        else:
            pixel_sizes.append(
                None if pixel_size is None else (pixel_size[0] * fy, pixel_size[1] * fx)
            )
        magnifications.append(None if magnification is None else magnification / ((fy + fx) / 2))
    return Slide(path, levels, ours, pixel_sizes, magnifications)


def _open_zarr(path: Path) -> Slide:
    from napari_cellseg.io.ome_zarr import open_image_zarr

    arrays, axes, sizes = open_image_zarr(path)
    return _slide(path, arrays, axes, None, None, sizes)


def open_slide(path: str | os.PathLike[str]) -> Slide:
    """Open a whole-slide TIFF or an OME-Zarr store; every level lazily.

    Raises
    ------
    ImageReadError
        Missing, damaged or truncated slides, formats that are not TIFF (MRXS, VSI, CZI),
        stacks (several z-planes or time points).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        raise ImageReadError(p, "file not found; check the path and the file name")
    if suffix in _NOT_TIFF:
        raise ImageReadError(
            p, f"{_NOT_TIFF[suffix]} slides are not TIFF files and cannot be read here; convert "
            "the slide to OME-TIFF or OME-Zarr (e.g. with bfconvert or bioformats2raw)",
        )  # fmt: skip
    try:
        if suffix == ".zarr":
            return _open_zarr(p)
        if p.stat().st_size == 0:
            raise ImageReadError(p, "file is empty (0 bytes); copy or export it again")
        return _open_tiff(p)
    except (CellsegError, MemoryError):
        raise
    except Exception as error:  # tifffile and zarr raise many types for damaged files
        raise ImageReadError(
            p, f"the slide is truncated or damaged ({type(error).__name__}: {error}); copy it again"
        ) from error


@dataclass(frozen=True)
class LevelChoice:
    """The level to segment and the factor its pixels are resampled by before the network."""

    level: int
    resample: float
    reason: str


def choose_level(slide: Slide, options: SlideOptions | None = None) -> LevelChoice:
    """The level for ``options``: the coarsest level at least as fine as asked.

    A level within :data:`TOLERANCE` of the asked pixel size (or magnification) is used as
    it is; otherwise the next finer level is resampled by ``resample`` (< 1 shrinks).
    """
    options = options or SlideOptions()
    n = len(slide.levels)
    if options.level is not None:
        if options.level >= n:
            raise ImageReadError(
                slide.path, f"has {n} pyramid level{'s' * (n > 1)} (0-{n - 1}); level "
                f"{options.level} does not exist: choose --level 0 to {n - 1}",
            )  # fmt: skip
        return LevelChoice(options.level, 1.0, f"level {options.level}")
    if options.pixel_size_um is not None:
        if slide.pixel_sizes[0] is None:
            raise ImageReadError(
                slide.path,
                "records no pixel size, so --pixel-size cannot choose a level; give --level N",
            )
        values = [float(np.mean(s)) for s in slide.pixel_sizes]  # type: ignore[arg-type]
        wanted = options.pixel_size_um
        fine = [i for i, v in enumerate(values) if v <= wanted * (1 + TOLERANCE)] or [0]
        index = max(fine, key=lambda i: values[i])
        resample = values[index] / wanted
        what = f"{wanted:g} \u00b5m pixels"
    elif options.magnification is not None:
        mags = _magnifications(slide)
        wanted = options.magnification
        fine = [i for i, m in enumerate(mags) if m >= wanted / (1 + TOLERANCE)] or [0]
        index = min(fine, key=lambda i: mags[i])
        resample = wanted / mags[index]
        what = f"{wanted:g}x"
    else:
        return LevelChoice(0, 1.0, "level 0")
    if abs(resample - 1) <= TOLERANCE:
        resample = 1.0
    how = "" if resample == 1.0 else f", resampled \u00d7{resample:.3g}"
    return LevelChoice(index, resample, f"level {index} for {what}{how}")


def _magnifications(slide: Slide) -> list[float]:
    """Recorded magnifications, else 10 / pixel size (20x ~ 0.5 µm, the usual scanners)."""
    if slide.magnifications[0] is not None:
        return [float(m) for m in slide.magnifications]  # type: ignore[arg-type]
    if slide.pixel_sizes[0] is not None:
        return [10.0 / float(np.mean(s)) for s in slide.pixel_sizes]  # type: ignore[arg-type]
    raise ImageReadError(
        slide.path, "records neither a magnification nor a pixel size; give --level N instead"
    )


def read_slide(
    path: str | os.PathLike[str], options: SlideOptions | None = None
) -> tuple[ImageData, LevelChoice]:
    """The level of a slide ``options`` asks for, lazily, and how it was chosen."""
    slide = open_slide(path)
    choice = choose_level(slide, options)
    data = slide.levels[choice.level]
    size = slide.pixel_sizes[choice.level]
    image = ImageData(data, slide.axes, slide.path, size, resample=choice.resample)
    return image, choice


def describe(slide: Slide) -> str:
    """One line per level: shape, pixel size, magnification (``cellseg`` notes, docs)."""
    lines = []
    for i, level in enumerate(slide.levels):
        size = slide.pixel_sizes[i]
        mag = slide.magnifications[i]
        um = "" if size is None else f", {float(np.mean(size)):.3g} \u00b5m"
        x = "" if mag is None else f", {mag:.3g}x"
        lines.append(f"level {i}: {' x '.join(map(str, level.shape))}{um}{x}")
    return "; ".join(lines)
