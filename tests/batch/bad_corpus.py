"""The corpus of bad (and unusual but valid) inputs used by test_bad_inputs.py.

Each maker creates one item in the input folder (monkeypatching the writer where a fault is
simulated) and returns its path.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from batch_helpers import disk_image, write_png, write_tif

from napari_cellseg.io import atomic

GOOD = "good.png"


def _patched_tiff(path: Path, compression: str | None, side: int) -> Path:
    """A small TIFF whose header then claims `side` x `side` pixels."""
    write_tif(path, np.zeros((16, 16), np.uint8), compression=compression)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        offsets = tags["ImageWidth"].valueoffset, tags["ImageLength"].valueoffset
    data = bytearray(path.read_bytes())
    for offset in offsets:
        struct.pack_into("<I", data, offset, side)
    path.write_bytes(bytes(data))
    return path


def _png_bomb(path: Path) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def truncated(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _readonly_output(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    real = os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(dst).name == "readonly_labels.tif":
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real(src, dst, *args, **kwargs)

    mp.setattr(atomic.os, "replace", refuse)
    return write_png(folder / "readonly.png", disk_image(1, 64))


def _disk_full(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    real = tifffile.imwrite

    def fill_the_disk(file, *args, **kwargs):
        if "diskfull_labels.tif" in str(getattr(file, "name", file)):
            file.write(b"II*\0" + b"\0" * 512)  # a partial file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, *args, **kwargs)

    mp.setattr(tifffile, "imwrite", fill_the_disk)
    return write_png(folder / "diskfull.png", disk_image(2, 64))


def _blocked_output(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    (folder.parent / "out" / "blocked_labels.tif").mkdir(parents=True)
    return write_png(folder / "blocked.png", disk_image(3, 64))


def _fifo(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    path = folder / "pipe.tif"
    os.mkfifo(path)
    return path


def _symlink_loop(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    os.symlink(folder / "loop_b.tif", folder / "loop_a.tif")
    os.symlink(folder / "loop_a.tif", folder / "loop_b.tif")
    return folder / "loop_a.tif"  # loop_b.tif fails the same way


def _listed_inside_output(folder: Path, mp: pytest.MonkeyPatch) -> Path:
    return write_png(folder.parent / "out" / "old_result.png", disk_image(4, 64))


Maker = Callable[[Path, pytest.MonkeyPatch], Path]
# kind -> (maker, fragment of the expected reason, how the batch is given: folder or list)
FAILING: dict[str, tuple[Maker, str, str]] = {
    "zero-byte PNG": (lambda f, mp: _touch(f / "empty.png"), "file is empty (0 bytes)", "dir"),
    "zero-byte TIFF": (lambda f, mp: _touch(f / "empty.tif"), "file is empty (0 bytes)", "dir"),
    "truncated PNG": (
        lambda f, mp: truncated(write_png(f / "cut.png", disk_image(5, 64))),
        "cannot read this PNG file: it is truncated",
        "dir",
    ),
    "truncated compressed TIFF": (
        lambda f, mp: truncated(
            write_tif(
                f / "cut.tif",
                np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8),
                compression="zlib",
            )
        ),
        "TIFF file is truncated or damaged",
        "dir",
    ),
    "truncated uncompressed TIFF": (
        lambda f, mp: truncated(write_tif(f / "cut.tif", disk_image(6, 64))),
        "is truncated or its header is damaged",
        "dir",
    ),
    "text file named .tif": (
        lambda f, mp: write_bytes(f / "notes.tif", b"just some text\n"),
        "not a valid TIFF file",
        "dir",
    ),
    "text file named .png": (
        lambda f, mp: write_bytes(f / "notes.png", b"just some text\n"),
        "cannot read this PNG file",
        "dir",
    ),
    "HTML page named .jpg": (
        lambda f, mp: write_bytes(f / "page.jpg", b"<html><body>404</body></html>"),
        "cannot read this JPG file",
        "dir",
    ),
    "0x0 image": (
        lambda f, mp: _quiet_write_tif(f / "zero.tif", np.zeros((0, 0), np.uint8)),
        "empty dimension",
        "dir",
    ),
    "1x1 image": (
        lambda f, mp: write_png(f / "dot.png", np.full((1, 1), 200, np.uint8)),
        "too small (1 x 1 pixels",
        "dir",
    ),
    "2x300 sliver": (
        lambda f, mp: write_png(f / "sliver.png", np.full((2, 300), 200, np.uint8)),
        "too small (2 x 300 pixels",
        "dir",
    ),
    "6-D stack": (
        lambda f, mp: write_tif(f / "six.tif", np.zeros((2, 2, 2, 2, 8, 8), np.uint8)),
        "has 6 dimensions",
        "dir",
    ),
    "NaN floats": (
        lambda f, mp: write_tif(f / "nan.tif", _with(disk_image(7, 64) / 255.0, np.nan)),
        "contains 1 NaN and 0 infinite values",
        "dir",
    ),
    "inf floats": (
        lambda f, mp: write_tif(f / "inf.tif", _with(disk_image(7, 64) / 255.0, np.inf)),
        "contains 0 NaN and 1 infinite values",
        "dir",
    ),
    "complex pixels": (
        lambda f, mp: write_tif(f / "complex.tif", np.ones((32, 32), np.complex64)),
        "unsupported pixel type complex64",
        "dir",
    ),
    "grey+alpha PNG (2 channels) for an RGB model": (
        lambda f, mp: write_png(f / "grey_alpha.png", np.stack([disk_image(8, 64)] * 2, -1)),
        "the image has 2 channels but the model takes RGB",
        "dir",
    ),
    "5-channel TIFF for an RGB model": (
        lambda f, mp: write_tif(
            f / "five_channels.tif", np.zeros((5, 32, 32), np.uint8), metadata={"axes": "CYX"}
        ),
        "the image has 5 channels but the model takes RGB",
        "dir",
    ),
    "read-only output folder": (_readonly_output, "permission denied", "dir"),
    "full disk": (_disk_full, "the disk is full", "dir"),
    "output name taken by a folder": (_blocked_output, "is a folder", "dir"),
    "directory named like an image": (
        lambda f, mp: _mkdir(f / "folder.tif"),
        "is a folder, not an image file",
        "list",
    ),
    "broken symlink": (
        lambda f, mp: _symlink(f / "gone.tif", f / "missing-target.tif"),
        "broken symbolic link",
        "dir",
    ),
    "symlink loop": (_symlink_loop, "symbolic link loop", "dir"),
    "named pipe (FIFO) named .tif": (_fifo, "not a regular file", "dir"),
    "TIFF header claiming 200000 x 200000 px (uncompressed)": (
        lambda f, mp: _patched_tiff(f / "giant.tif", None, 200_000),
        "header declares 200000 x 200000 uint8 pixels (40.0 GB of raw data)",
        "dir",
    ),
    "TIFF header claiming 3e9 x 3e9 px (compressed)": (
        lambda f, mp: _patched_tiff(f / "giant.tif", "zlib", 3_000_000_000),
        "which need 9000.0 PB of memory",
        "dir",
    ),
    "PNG header claiming 100000 x 100000 px (decompression bomb)": (
        lambda f, mp: _png_bomb(f / "bomb.png"),
        "could be decompression bomb",
        "dir",
    ),
    "missing file": (lambda f, mp: f / "does-not-exist.tif", "file not found", "list"),
    "unsupported type given explicitly": (
        lambda f, mp: write_bytes(f / "table.csv", b"a,b\n1,2\n"),
        "unsupported file type '.csv'",
        "list",
    ),
    "earlier output given as input": (_listed_inside_output, "inside the output folder", "list"),
}

SUCCEEDING: dict[str, Maker] = {
    "name with spaces": lambda f, mp: write_png(f / "my image 01.png", disk_image(9, 64)),
    "non-ASCII name": lambda f, mp: write_png(f / "zelle_äöü_細胞.png", disk_image(10, 64)),
    "upper-case suffix": lambda f, mp: write_tif(f / "UPPER.TIF", disk_image(11, 64)),
    "OME-TIFF name": lambda f, mp: write_tif(f / "scan.ome.tif", disk_image(12, 64)),
    "5-D stack TZCYX (supported: labels TZYX)": lambda f, mp: write_tif(
        f / "five_d.tif",
        np.stack([[np.stack([disk_image(t * 2 + z, 32)] * 3) for z in range(2)] for t in range(2)]),
        metadata={"axes": "TZCYX"},
        photometric="minisblack",
    ),
    "16-bit PNG": lambda f, mp: write_png(
        f / "sixteen.png", disk_image(13, 64).astype(np.uint16) * 257
    ),
    "boolean TIFF": lambda f, mp: write_tif(f / "mask.tif", disk_image(14, 64) > 100),
    "negative int16": lambda f, mp: write_tif(
        f / "signed.tif", disk_image(15, 64).astype(np.int16) - 100
    ),
    "all-black image (no objects)": lambda f, mp: write_png(
        f / "black.png", np.zeros((64, 64), np.uint8)
    ),
}


def _quiet_write_tif(path: Path, data: np.ndarray) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that 0x0 is nonconformant: the point
        return write_tif(path, data)


def _touch(path: Path) -> Path:
    path.touch()
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _symlink(path: Path, target: Path) -> Path:
    os.symlink(target, path)
    return path


def _with(image: np.ndarray, value: float) -> np.ndarray:
    out = image.astype(np.float32)
    out[5, 7] = value
    return out
