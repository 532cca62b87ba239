"""File-level rules shared by readers and writers (napari_cellseg.io.files)."""

from __future__ import annotations

import doctest
import errno
import hashlib
from pathlib import Path

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.io import files
from napari_cellseg.io.files import label_dtype, sha256_path, write_problem


def test_doctests() -> None:
    result = doctest.testmod(files, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_label_dtype() -> None:
    assert label_dtype(0) == np.uint16
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    assert label_dtype(2**32 - 1) == np.uint32
    with pytest.raises(CellsegError):
        label_dtype(2**32)
    with pytest.raises(ValueError):
        label_dtype(-1)


def test_sha256_path_of_a_file_is_its_content_hash(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * (3 << 20))  # several read blocks
    assert sha256_path(f) == hashlib.sha256(f.read_bytes()).hexdigest()


def test_sha256_path_of_a_folder_covers_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    first = sha256_path(tmp_path)
    assert first == sha256_path(str(tmp_path))
    (tmp_path / "a.txt").rename(tmp_path / "c.txt")
    assert sha256_path(tmp_path) != first


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "permission denied"),
        (errno.EIO, "could not write the file"),
    ],
)
def test_write_problem(code: int, words: str) -> None:
    assert write_problem(OSError(code, "boom")).startswith(words)
