"""Growing a training set from corrected segmentations, and autosaving corrections.

A training set folder holds ``images/<name>.tif``, ``masks/<name>.tif`` (see
:mod:`napari_cellseg.training.pairs`) and ``manifest.json``, a list with one entry per added pair
recording where it came from (source file, model, edited object ids, time). When only part
of the image was checked, ``regions/<name>.tif`` (uint8, 1 where checked) says which part
(:mod:`napari_cellseg.training.regions`); training then ignores the rest. Every file is
written atomically, so a crash or a full disk never leaves a half-written pair behind.

``.autosave/<name>_labels.tif`` keeps the latest state of labels being corrected, written
after every edit so that a crash loses nothing; hidden folders are ignored by
:func:`~napari_cellseg.training.pairs.scan_training_folders`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_cellseg.errors import CellsegError, ImageWriteError
from napari_cellseg.io.atomic import atomic_write, atomic_write_text
from napari_cellseg.io.images import SUPPORTED_IMAGE_SUFFIXES, write_labels
from napari_cellseg.training.regions import REGIONS_DIR

__all__ = [
    "AUTOSAVE_DIR",
    "MANIFEST",
    "add_to_training_set",
    "autosave_corrections",
    "list_autosaves",
    "read_manifest",
    "safe_name",
]

MANIFEST = "manifest.json"
"""File name of the provenance list in a training-set folder."""

AUTOSAVE_DIR = ".autosave"
"""Hidden sub-folder holding autosaved labels."""

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
_MAX_NAME = 120


def safe_name(name: str) -> str:
    """A file name stem safe on every file system (spaces kept, separators removed).

    Examples
    --------
    >>> safe_name("cells 01 / crop:2")
    'cells 01 _ crop_2'
    >>> safe_name("..hidden."), safe_name("  "), safe_name("a.ome")
    ('hidden', 'image', 'a_ome')
    """
    out = _UNSAFE.sub("_", name).strip(" .")
    if out.lower().endswith(".ome"):  # ".ome.tif" would be read as a single suffix
        out = out[:-4] + "_ome"
    out = out[:_MAX_NAME].rstrip(" .")
    return out or "image"


def _stem_taken(folder: Path, stem: str) -> bool:
    for sub in ("images", "masks", REGIONS_DIR):
        for suffix in SUPPORTED_IMAGE_SUFFIXES:
            if (folder / sub / f"{stem}{suffix}").exists():
                return True
    return False


def _free_stem(folder: Path, stem: str, taken: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in taken or _stem_taken(folder, candidate):
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


def read_manifest(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of ``folder/manifest.json`` (``[]`` when there is none).

    Raises
    ------
    CellsegError
        If the manifest exists but is not a JSON list.
    """
    path = Path(folder) / MANIFEST
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CellsegError(
            f"{path}: cannot read the manifest ({exc}); repair or move it away, then add again"
        ) from exc
    if not isinstance(entries, list):
        raise CellsegError(f"{path}: the manifest is not a list; repair or move it away")
    return entries


def _image_for_tiff(image: np.ndarray, plane_shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """The image to store (YX or YXS) and its TIFF photometric; error if it doesn't fit."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2 and img.shape == plane_shape:
        return img, "minisblack"
    if img.ndim == 3 and img.shape[:2] == plane_shape and img.shape[-1] in (3, 4):
        return img, "rgb"
    raise CellsegError(
        f"the image (shape {img.shape}) does not match the labels (shape {plane_shape}); "
        "training needs a 2-D grey or RGB image of the same height and width"
    )


def _region_for_tiff(region: np.ndarray | None, plane_shape: tuple[int, ...]) -> np.ndarray | None:
    """The region as uint8 0/1 of the labels' shape; error if it doesn't fit or is empty."""
    if region is None:
        return None
    checked = np.asarray(region)
    while checked.ndim > 2 and checked.shape[0] == 1:
        checked = checked[0]
    if checked.shape != plane_shape:
        raise CellsegError(
            f"the checked region (shape {checked.shape}) does not match the labels (shape "
            f"{plane_shape}); give a 2-D region mask of the same height and width"
        )
    checked = (checked != 0).astype(np.uint8)
    if not checked.any():
        raise CellsegError("the checked region is empty: mark the part you corrected")
    return checked


def _write_image(path: Path, image: np.ndarray, photometric: str) -> None:
    try:
        with atomic_write(path, "wb") as fh:
            tifffile.imwrite(fh, image, photometric=photometric, compression="zlib")
    except OSError as exc:
        raise ImageWriteError(path, f"could not write the image ({exc})") from exc


def _hidden_tmp(directory: Path, stem: str) -> Path:
    """A hidden ``.tif`` name (ignored by the training-set scan) for staging a file."""
    return directory / f".{stem}.{secrets.token_hex(4)}.partial.tif"


def add_to_training_set(
    folder: str | os.PathLike[str],
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    source: str | None = None,
    edited_ids: list[int] | tuple[int, ...] = (),
    model: str | None = None,
    overwrite: bool = False,
    region: np.ndarray | None = None,
) -> tuple[Path, Path]:
    """Add an image and its corrected labels to a training set, recording provenance.

    Writes ``folder/images/<name>.tif`` (the image as given, RGB kept as YXS) and
    ``folder/masks/<name>.tif`` (the labels), then appends an entry to
    ``folder/manifest.json``. Both files are staged under hidden names and moved into place
    only when both are complete; on any failure nothing new is left behind.

    Parameters
    ----------
    folder : str or os.PathLike
        The training-set folder (created if needed).
    name : str
        Name of the pair; made safe for file systems. If a pair of that name exists a
        suffix ``_2``, ``_3``, ... is added, unless `overwrite`.
    image : numpy.ndarray
        2-D grey image or ``(Y, X, 3|4)`` RGB(A) image.
    labels : numpy.ndarray
        2-D instance labels of the same height and width.
    source : str, optional
        Where the image came from (file path), for the manifest.
    edited_ids : sequence of int, optional
        Object ids the user corrected.
    model : str, optional
        Name of the model whose prediction was corrected.
    overwrite : bool, optional
        Replace an existing pair of the same name (and its manifest entry).
    region : numpy.ndarray, optional
        The part of the image whose labels were checked (non-zero = checked), of the labels'
        height and width; written as ``folder/regions/<name>.tif`` (uint8 0/1), and training
        ignores the rest of the image. ``None``: the whole image counts.

    Returns
    -------
    tuple of pathlib.Path
        The image and mask files written.

    Raises
    ------
    CellsegError
        If the shapes do not fit, the manifest is broken or a file cannot be written.
    """
    root = Path(folder)
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise CellsegError(
            f"training needs 2-D labels, got shape {labels.shape}; add one plane at a time"
        )
    img, photometric = _image_for_tiff(image, labels.shape)
    checked = _region_for_tiff(region, labels.shape)
    entries = read_manifest(root)
    subs = ("images", "masks") + ((REGIONS_DIR,) if checked is not None else ())
    try:
        for sub in subs:
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(root, f"cannot create the training-set folders ({exc})") from exc
    stem = safe_name(name)
    if not overwrite:
        stem = _free_stem(root, stem, {str(e.get("name")) for e in entries})
    image_path, mask_path = root / "images" / f"{stem}.tif", root / "masks" / f"{stem}.tif"
    region_path = root / REGIONS_DIR / f"{stem}.tif"
    staged = [_hidden_tmp(root / sub, stem) for sub in subs]
    finals = [image_path, mask_path, region_path][: len(subs)]
    placed: list[Path] = []
    entry = {
        "name": stem,
        "image": f"images/{stem}.tif",
        "mask": f"masks/{stem}.tif",
        "source": None if source is None else str(source),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edited_object_ids": sorted({int(i) for i in edited_ids}),
        "model": model,
        "n_objects": int(np.count_nonzero(np.unique(labels))),
        "region": None if checked is None else f"{REGIONS_DIR}/{stem}.tif",
        "checked_fraction": 1.0 if checked is None else round(float(checked.mean()), 4),
    }
    entries = [e for e in entries if e.get("name") != stem] + [entry]
    try:
        _write_image(staged[0], img, photometric)
        write_labels(staged[1], labels)
        if checked is not None:
            _write_image(staged[2], checked, "minisblack")
        for tmp, final in zip(staged, finals, strict=True):
            os.replace(tmp, final)
            placed.append(final)
        atomic_write_text(root / MANIFEST, json.dumps(entries, indent=1) + "\n")
    except BaseException as exc:
        for path in staged + ([] if overwrite else placed):
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ImageWriteError(root, f"could not add '{stem}' ({exc})") from exc
        raise
    if overwrite:  # the same stem with another suffix would make the set ambiguous
        kept_region = region_path if checked is not None else None  # none now: whole image
        for sub, keep in (("images", image_path), ("masks", mask_path), (REGIONS_DIR, kept_region)):
            for suffix in SUPPORTED_IMAGE_SUFFIXES:
                other = root / sub / f"{stem}{suffix}"
                if other != keep and other.exists():
                    other.unlink()
    return image_path, mask_path


def autosave_corrections(folder: str | os.PathLike[str], name: str, labels: np.ndarray) -> Path:
    """Save labels being corrected to ``folder/.autosave/<name>_labels.tif``, atomically.

    Parameters
    ----------
    folder : str or os.PathLike
        The training-set folder (or any folder); ``.autosave/`` is created in it.
    name : str
        Name of the labels (made safe for file systems).
    labels : numpy.ndarray
        2-D or 3-D labels.

    Returns
    -------
    pathlib.Path
        The file written (replaced on every call).

    Raises
    ------
    CellsegError
        If the folder cannot be created or the file cannot be written.
    """
    directory = Path(folder) / AUTOSAVE_DIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(directory, f"cannot create the autosave folder ({exc})") from exc
    return write_labels(directory / f"{safe_name(name)}_labels.tif", labels)


def list_autosaves(folder: str | os.PathLike[str]) -> list[Path]:
    """The autosaved label files of `folder`, newest first (``[]`` when there are none)."""
    directory = Path(folder) / AUTOSAVE_DIR
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob("*_labels.tif") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
