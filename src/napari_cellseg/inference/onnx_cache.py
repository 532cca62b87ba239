"""The cache of exported models: where they are kept, and how it stays within its limit.

ONNX exports (:mod:`.onnx_backend`), their int8 copies (:mod:`.onnx_int8`) and the files
kept beside each (its checks, its graphs optimized for a CPU: :mod:`.onnx_optimized`) live
in one folder; every fine-tune makes new weights and so new files, and the least recently
used are deleted past :data:`CACHE_LIMIT_BYTES`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.atomic import atomic_write_text

__all__ = [
    "CACHE_LIMIT_BYTES",
    "cache_dir",
    "cache_limit_bytes",
    "forget_export",
    "keep_json",
    "read_json",
    "sidecars",
    "used_and_pruned",
]

#: Size of the cache of exported models beyond which the least recently used are deleted
#: (the demo U-Net: 14 MB in float32, 3.6 MB in int8); ``$NAPARI_CELLSEG_CACHE_LIMIT_MB``.
CACHE_LIMIT_BYTES = 1 << 30


def cache_dir() -> Path:
    """Where exported models are kept: ``$NAPARI_CELLSEG_CACHE/onnx`` or the user cache.

    >>> import os
    >>> os.environ["NAPARI_CELLSEG_CACHE"] = "/tmp/x"
    >>> str(cache_dir())
    '/tmp/x/onnx'
    >>> del os.environ["NAPARI_CELLSEG_CACHE"]
    """
    root = os.environ.get("NAPARI_CELLSEG_CACHE")
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("napari-cellseg", appauthor=False)
    return Path(root) / "onnx"


def used_and_pruned(path: Path, limit_bytes: int | None = None) -> list[Path]:
    """Mark the cached model ``path`` as just used, then delete the least recently used
    cached models while the cache holds more than ``limit_bytes``; the deleted paths.

    Every fine-tune makes new weights, and each is exported (and quantized for ``int8``)
    the first time it runs: without a bound the cache would only grow. ``path`` itself is
    never deleted; a deleted model is exported again when next needed. The limit is
    :data:`CACHE_LIMIT_BYTES` unless ``$NAPARI_CELLSEG_CACHE_LIMIT_MB`` says otherwise.
    """
    limit_bytes = cache_limit_bytes() if limit_bytes is None else limit_bytes
    deleted = []
    try:
        now = time.time_ns()  # the last use is the access time (set here: noatime-proof);
        os.utime(path, ns=(now, path.stat().st_mtime_ns))  # the mtime still says when made
        models = [f for f in path.parent.glob("*.onnx") if "." not in f.stem and f != path]
        files = [(f.stat().st_atime_ns, f, _size_with_sidecars(f)) for f in models]
        total = _size_with_sidecars(path) + sum(size for _, _, size in files)
        for _, oldest, size in sorted(files, key=lambda entry: entry[0]):
            if total <= limit_bytes:
                break
            forget_export(oldest)
            total -= size
            deleted.append(oldest)
    except OSError:  # another process pruned first, or a read-only cache: nothing lost
        pass
    return deleted


def read_json(path: Path) -> dict:
    """The JSON object kept at ``path`` in the cache (empty if none, unreadable or not one)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def keep_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (in a read-only cache it is not kept)."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1))


def sidecars(path: Path) -> list[Path]:
    """The files kept beside the cached model ``path``: its checks (``<stem>.checked.json``)
    and its graphs optimized for a CPU (``<stem>.opt-<key>.onnx``)."""
    return [f for f in path.parent.glob(f"{path.stem}.*") if f != path]


def forget_export(path: Path) -> None:
    """Delete the cached model ``path`` and its :func:`sidecars` (made again when needed)."""
    path.unlink(missing_ok=True)
    for sidecar in sidecars(path):
        sidecar.unlink(missing_ok=True)


def _size_with_sidecars(path: Path) -> int:
    return path.stat().st_size + sum(f.stat().st_size for f in sidecars(path))


def cache_limit_bytes() -> int:
    """:data:`CACHE_LIMIT_BYTES`, or ``$NAPARI_CELLSEG_CACHE_LIMIT_MB`` megabytes.

    Raises
    ------
    CellsegError
        The variable is set to something other than a number of megabytes.
    """
    text = os.environ.get("NAPARI_CELLSEG_CACHE_LIMIT_MB", "").strip()
    if not text:
        return CACHE_LIMIT_BYTES
    try:
        return int(float(text) * 2**20)
    except ValueError:
        raise CellsegError(
            f"NAPARI_CELLSEG_CACHE_LIMIT_MB={text!r} is not a number of megabytes: "
            "unset it or give one, e.g. 2048"
        ) from None
