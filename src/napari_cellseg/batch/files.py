"""Finding the input images and naming the outputs (reading them: :mod:`.reading`).

Inputs are a folder (optionally walked recursively, filtered by include / exclude glob
patterns) or a list of files. Outputs mirror the input's subfolders under the output folder:
``<out>/<relative folder>/<stem>_labels.tif`` (and ``<stem>_measurements.csv``, and the
exports ``<stem>_labels.geojson`` and ``<stem>_rois.zip``). The output
folder, hidden files and folders, and any folder holding a batch manifest (an earlier output
folder) are never read as input. Symbolic links to folders are not followed (no loops).
"""

from __future__ import annotations

import fnmatch
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.exports import export_path
from napari_cellseg.io.images import SUPPORTED_IMAGE_SUFFIXES
from napari_cellseg.io.slides import SLIDE_SUFFIXES

__all__ = [
    "LABELS_SUFFIX",
    "MANIFEST_NAME",
    "MEASUREMENTS_SUFFIX",
    "FileTask",
    "find_inputs",
    "plan_tasks",
]

LABELS_SUFFIX = "_labels.tif"
ZARR_LABELS_SUFFIX = "_labels.ome.zarr"
MEASUREMENTS_SUFFIX = "_measurements.csv"
MANIFEST_NAME = "batch_manifest.json"
"""Uncompressed TIFFs with more pixels than this (64 Mpx) are memory-mapped, not loaded."""

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
    exports : tuple of (str, str)
        ``(format, path)`` of each export to write beside the labels (``geojson``, ``roi``).
    """

    source: str
    rel: str
    labels: str
    measurements: str | None = None
    input_size: int = -1
    input_mtime_ns: int = -1
    exports: tuple[tuple[str, str], ...] = ()


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
    return name.lower().endswith(SUPPORTED_IMAGE_SUFFIXES + SLIDE_SUFFIXES)


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
            if d.lower().endswith(".zarr"):  # an OME-Zarr store is one input, not a folder
                if not _is_labels_name(d):
                    found.append((sub, sub.relative_to(root).as_posix()))
                continue
            keep.append(d)
        dirnames[:] = keep if recursive else []
        for name in sorted(filenames):
            if name.startswith(".") or name == MANIFEST_NAME:
                continue
            path = here / name
            found.append((path, path.relative_to(root).as_posix()))
    return found


LABELS_NOTE = (
    "is named like a label image cellseg wrote (*_labels.tif): not segmented; rename it, or "
    "select it with --include, to segment it"
)


def _is_labels_name(name: str) -> bool:
    return name.lower().endswith((LABELS_SUFFIX, LABELS_SUFFIX + "f", ZARR_LABELS_SUFFIX))


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
        Listed files that are never read: inside the output folder, or in a folder input
        without ``include``, label images cellseg wrote (``*_labels.tif``).

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
    single = Path(items[0]) if len(items) == 1 else None
    if single is not None and single.is_dir() and single.suffix.lower() != ".zarr":
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
        if not include:  # label images cellseg wrote (predict --out into this folder)
            rejected += [(p, LABELS_NOTE) for p, _ in found if _is_labels_name(p.name)]
            found = [(p, r) for p, r in found if not _is_labels_name(p.name)]
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
    for p in dict.fromkeys(paths):  # a file given twice is segmented once
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


def plan_tasks(
    files: list[tuple[Path, str]],
    out: Path,
    *,
    measure: bool,
    exports: Sequence[str] = (),
    labels_suffix: str = LABELS_SUFFIX,
) -> list[FileTask]:
    """One :class:`FileTask` per input; files whose outputs would collide (``a.png`` and
    ``a.tif`` in one folder) keep their suffix in the name (``a_png_labels.tif``).
    ``exports`` (``geojson``, ``roi``) go beside the labels (:func:`export_path`);
    ``labels_suffix`` is ``_labels.ome.zarr`` for OME-Zarr labels."""
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
        labels = folder / f"{stem}{labels_suffix}"
        tif_name = folder / f"{stem}{LABELS_SUFFIX}"  # exports: a_labels.geojson, a_rois.zip
        tasks.append(
            FileTask(
                source=str(path),
                rel=rel,
                labels=str(labels),
                measurements=str(folder / f"{stem}{MEASUREMENTS_SUFFIX}") if measure else None,
                input_size=size,
                input_mtime_ns=mtime,
                exports=tuple((fmt, str(export_path(tif_name, fmt))) for fmt in exports),
            )
        )
    return tasks
