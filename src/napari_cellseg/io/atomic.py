"""Atomic file writes: the target is either the old file or the complete new one.

Data is written to a hidden temporary file in the target's directory (``.<name>.<random>.tmp``),
flushed and fsync'ed, then moved onto the target with :func:`os.replace`, which is atomic on
POSIX and Windows when source and target are on the same file system. If anything fails, the
temporary file is removed, the target is left untouched and the original exception (usually an
:class:`OSError`) propagates; callers turn it into a user-facing error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

_TMP_SUFFIX = ".tmp"

# The process umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so the rename itself is durable (POSIX only)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces `path` atomically when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its directory must exist.
    mode : str, optional
        ``"wb"`` (default) or ``"w"`` (text). Only write modes are allowed.
    encoding : str, optional
        Text encoding for ``mode="w"`` (defaults to UTF-8).
    newline : str, optional
        Newline handling for ``mode="w"``, as in :func:`open`.

    Yields
    ------
    IO
        The open temporary file to write to.

    Raises
    ------
    ValueError
        If `mode` is not a write mode.
    OSError
        If the temporary file cannot be created, written, synced or renamed (read-only
        folder, disk full, ...). The temporary file is always removed and the target untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write supports mode 'wb' or 'w', not {mode!r}")
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=directory)
    tmp = Path(tmp_name)
    os.close(fd)  # reopened by name so that ``fh.name`` is the path (tifffile needs one)
    try:
        if mode == "w":
            fh: IO[Any] = open(tmp, "w", encoding=encoding or "utf-8", newline=newline)  # noqa: SIM115
        else:
            fh = open(tmp, "wb")  # noqa: SIM115
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file with mode 0600; give it the usual umask-based mode.
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    data : bytes
        Content to write.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    OSError
        If writing fails; nothing partial is left behind.
    """
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    text : str
        Content to write.
    encoding : str, optional
        Text encoding, UTF-8 by default.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    OSError
        If writing fails; nothing partial is left behind.
    """
    with atomic_write(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)
