"""Finding the input images, naming the outputs and reading inputs safely.

Inputs are a folder (optionally walked recursively, filtered by include / exclude glob
patterns) or a list of files. Outputs mirror the input's subfolders under the output folder:
``<out>/<relative folder>/<stem>_labels.tif`` (and ``<stem>_measurements.csv``). The output
folder, hidden files and folders, and any folder holding a batch manifest (an earlier output
folder) are never read as input. Symbolic links to folders are not followed (no loops).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cellseg.core.errors import CellsegError, ImageReadError
from napari_cellseg.core.io import SUPPORTED_IMAGE_SUFFIXES, ImageData, read_image

__all__ = [
    "DEFAULT_MEMMAP_PIXELS",
    "LABELS_SUFFIX",
    "MANIFEST_NAME",
    "MEASUREMENTS_SUFFIX",
    "FileTask",
    "find_inputs",
    "plan_tasks",
    "read_input",
]

LABELS_SUFFIX = "_labels.tif"
MEASUREMENTS_SUFFIX = "_measurements.csv"
MANIFEST_NAME = "batch_manifest.json"
DEFAULT_MEMMAP_PIXELS = 1 << 26
"""Uncompressed TIFFs with more pixels than this (64 Mpx) are memory-mapped, not loaded."""

_TIFF_SUFFIXES = (".tif", ".tiff")
InputSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class FileTask:
    """One input file and where its outputs go (picklable; sent to dask workers).

    Attributes
    ----------
    source : str
        Absolute path of the input image.
    rel : str
        Its path relative to the input root, with ``/`` separators (the manifest key).
    labels : str
        Absolute path of the label TIFF to write.
    measurements : str or None
        Absolute path of the measurements CSV, when measuring.
    input_size, input_mtime_ns : int
        The input's size and modification time when planned (a changed input is redone).
    """

    source: str
    rel: str
    labels: str
    measurements: str | None = None
    input_size: int = -1
    input_mtime_ns: int = -1


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(SUPPORTED_IMAGE_SUFFIXES)


def _walk(root: Path, out: Path, recursive: bool) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    out_resolved = out.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            if d.startswith(".") or (sub / MANIFEST_NAME).exists():
                continue
            if sub.resolve() == out_resolved:
                continue
            keep.append(d)
        dirnames[:] = keep if recursive else []
        for name in sorted(filenames):
            if name.startswith(".") or name == MANIFEST_NAME:
                continue
            path = here / name
            found.append((path, path.relative_to(root).as_posix()))
    return found


def find_inputs(
    inputs: InputSpec,
    out: str | os.PathLike[str],
    *,
    recursive: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> tuple[Path, list[tuple[Path, str]], list[tuple[Path, str]]]:
    """List the input images.

    Parameters
    ----------
    inputs : path or sequence of paths
        One folder, or image files.
    out : path
        The output folder (never read as input).
    recursive : bool
        Also walk subfolders (folder input).
    include, exclude : sequence of str
        Glob patterns matched against the file name and the relative path; by default every
        supported image type is included.

    Returns
    -------
    root : pathlib.Path
        The folder relative paths start from.
    files : list of (path, relative path)
        Inputs in a stable (sorted) order.
    rejected : list of (path, reason)
        Listed files that are never read (inside the output folder).

    Raises
    ------
    CellsegError
        If the input is missing, equals the output folder, or holds no image.
    """
    out = Path(out).absolute()
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items:
        raise CellsegError("no input given: pass a folder or image files")
    rejected: list[tuple[Path, str]] = []
    if len(items) == 1 and Path(items[0]).is_dir():
        root = Path(items[0]).absolute()
        if root.resolve() == out.resolve():
            raise CellsegError(
                f"{root}: the output folder must differ from the input folder; choose another"
            )
        if _is_inside(root, out):
            raise CellsegError(
                f"{root}: the input folder is inside the output folder {out}; outputs could "
                "overwrite inputs: choose an output folder outside it"
            )
        found = _walk(root, out, recursive)
        if include:
            found = [(p, r) for p, r in found if _matches(r, include)]
        else:
            found = [(p, r) for p, r in found if _is_image_name(p.name)]
        found = [(p, r) for p, r in found if not _matches(r, exclude)]
        if not found:
            looked = ", ".join(include) if include else ", ".join(SUPPORTED_IMAGE_SUFFIXES)
            raise CellsegError(
                f"{root}: no image files found (looked for {looked}"
                f"{'' if recursive else ', top level only'}); check the folder, "
                "--recursive or --include"
            )
        return root, found, rejected
    paths = [Path(p).absolute() for p in items]
    if len(paths) == 1 and not paths[0].exists() and not paths[0].is_symlink():
        raise CellsegError(f"{paths[0]}: input not found; give an existing folder or files")
    try:
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # different drives
        root = None
    files: list[tuple[Path, str]] = []
    for p in paths:
        if _is_inside(p, out):
            rejected.append((p, "is inside the output folder; outputs are never read as input"))
            continue
        if _matches(p.name, exclude):
            continue
        files.append((p, p.relative_to(root).as_posix() if root else p.name))
    return root or paths[0].parent, files, rejected


def output_stem(name: str) -> str:
    """The file name without its image suffix (``a.ome.tif`` -> ``a``)."""
    stem = Path(name).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def plan_tasks(files: list[tuple[Path, str]], out: Path, *, measure: bool) -> list[FileTask]:
    """One :class:`FileTask` per input; files whose outputs would collide (``a.png`` and
    ``a.tif`` in one folder) keep their suffix in the name (``a_png_labels.tif``)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _path, rel in files:
        parent, _, name = rel.rpartition("/")
        groups[(parent, output_stem(name).casefold())].append(rel)
    tasks = []
    for path, rel in files:
        parent, _, name = rel.rpartition("/")
        stem = output_stem(name)
        if len(groups[(parent, stem.casefold())]) > 1:
            stem = f"{stem}_{name[len(stem) :].lstrip('.').replace('.', '_')}"
        folder = out / parent if parent else out
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        tasks.append(
            FileTask(
                source=str(path),
                rel=rel,
                labels=str(folder / f"{stem}{LABELS_SUFFIX}"),
                measurements=str(folder / f"{stem}{MEASUREMENTS_SUFFIX}") if measure else None,
                input_size=size,
                input_mtime_ns=mtime,
            )
        )
    return tasks


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

    from napari_cellseg.core.io import _check_array, _map_axes  # the reader's own rules
    from napari_cellseg.core.pixel_size import tiff_pixel_size

    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        pixel_size = tiff_pixel_size(tif)
    data = tifffile.memmap(path, series=0, mode="r")
    _check_array(path, data, axes)
    ours = _map_axes(path, axes)
    if "S" in ours and not ours.endswith("S"):
        data = np.moveaxis(data, ours.index("S"), -1)
        ours = ours.replace("S", "") + "S"
    return ImageData(data, ours, path, pixel_size)


_LAZY_AXES = ("YX", "YXS")


def _lazy_tiff(path: Path) -> ImageData:
    """A compressed TIFF as a read-only zarr array: pixels are decoded when sliced."""
    import tifffile
    import zarr

    from napari_cellseg.core.io import _check_array
    from napari_cellseg.core.pixel_size import tiff_pixel_size

    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        pixel_size = tiff_pixel_size(tif)
    data = zarr.open_array(tifffile.imread(path, aszarr=True, series=0), mode="r")
    _check_array(path, data, axes)
    return ImageData(data, axes, path, pixel_size)


def read_input(
    path: str | os.PathLike[str], *, memmap_pixels: int = DEFAULT_MEMMAP_PIXELS
) -> ImageData:
    """Read one input image, guarding against lying headers and huge files.

    Like :func:`napari_cellseg.core.io.read_image`, plus: broken links, link loops and
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
        if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES:
            plan = _tiff_plan(p, memmap_pixels)
            if plan == "memmap":
                return _memmap_tiff(p)
            if plan == "lazy":
                return _lazy_tiff(p)
        elif p.is_file() and p.stat().st_size > 0:
            _check_pillow_header(p)
        return read_image(p)
    except MemoryError:
        raise ImageReadError(
            p, "not enough memory to read it; close other programs or split the image"
        ) from None
