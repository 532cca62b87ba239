"""Exceptions whose message is meant for the user.

Every expected failure (a bad file, an unsupported input, a missing local weight file)
raises a subclass of :class:`CellsegError` whose ``str()`` is one clear line saying what
was wrong and, where possible, what to do. The CLI prints that line and exits non-zero;
the napari widgets show it as a notification instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


def first_line(error: BaseException) -> str:
    r"""An exception's first line, for a one-line message (its type's name when it has none).

    >>> first_line(RuntimeError("Unsupported: foo\nlong trace")), first_line(KeyError())
    ('Unsupported: foo', 'KeyError')
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CellsegError(Exception):
    """Base class of all errors with a user-facing message."""


class ImageReadError(CellsegError):
    """An image or label file could not be read or is not supported."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageWriteError(CellsegError):
    """An output file could not be written (nothing partial is left behind)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WeightFileError(CellsegError):
    """A weight file could not be loaded: names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelBuildError(CellsegError):
    """A model could not be built from the given arguments (unknown encoder, offline, ...)."""
