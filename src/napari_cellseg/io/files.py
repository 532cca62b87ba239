"""Small file-level rules shared by readers and writers: hashes, label dtype, write errors,
where a file may be written."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np

from napari_cellseg.errors import CellsegError, ImageWriteError

__all__ = ["check_destination", "label_dtype", "sha256_path", "write_problem"]

_UINT16_MAX = int(np.iinfo(np.uint16).max)
_UINT32_MAX = int(np.iinfo(np.uint32).max)


def label_dtype(n: int) -> np.dtype:
    """The label dtype for labels up to ``n``: uint16 up to 65535, else uint32.

    Parameters
    ----------
    n : int
        The number of objects (or the largest label), 0 or more.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    ValueError
        If ``n`` is negative.
    CellsegError
        If ``n`` does not fit uint32.

    Examples
    --------
    >>> label_dtype(65535), label_dtype(65536)
    (dtype('uint16'), dtype('uint32'))
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"object count must be >= 0, got {n}")
    if n <= _UINT16_MAX:
        return np.dtype(np.uint16)
    if n <= _UINT32_MAX:
        return np.dtype(np.uint32)
    raise CellsegError(f"{n} objects do not fit a uint32 label image; split the image")


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of every file (name and content) of a folder, streamed.

    Parameters
    ----------
    path : str or os.PathLike
        A file (its content is hashed) or a folder (each file's relative name and content,
        in sorted order).

    Returns
    -------
    str
        The hex digest.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_problem(exc: OSError) -> str:
    """What went wrong writing a file, in words, with what to do (for ``ImageWriteError``).

    Examples
    --------
    >>> write_problem(OSError(errno.ENOSPC, "No space left on device"))
    'the disk is full; free some space or choose another folder'
    """
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", None):
        return "the disk is full; free some space or choose another folder"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only folder?); choose a folder you can write to"
    return f"could not write the file ({exc.strerror or exc}); choose another folder"


def check_destination(path: Path, suffix: str | None = None) -> None:
    """Refuse, in one line, a destination whose folder is missing or, for a file (``suffix``:
    the name ending to suggest), one that is a folder.

    Raises
    ------
    ImageWriteError
        Saying what is wrong and what to do.

    Examples
    --------
    >>> check_destination(Path("/no/such/folder/a.tif"), ".tif")
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.ImageWriteError: /no/such/folder/a.tif: the folder does not exist; \
create it or choose another one
    >>> check_destination(Path("/"), ".zip")
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.ImageWriteError: /: is a folder; give a file name ending in .zip
    """
    if not path.parent.is_dir():
        raise ImageWriteError(path, "the folder does not exist; create it or choose another one")
    if suffix is not None and path.is_dir():
        raise ImageWriteError(path, f"is a folder; give a file name ending in {suffix}")
