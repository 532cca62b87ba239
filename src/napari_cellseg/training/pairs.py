"""Training sets on disk: finding image/mask pairs, checking them and loading them.

A training folder holds ``images/<name>.<png|tif|...>`` and ``masks/<name>.<tif|tiff|png>``
(instance labels: 0 = background, 1..N = objects), matched by file name without suffix,
and optionally ``regions/<name>.tif``, the part of the image whose labels were checked
(:mod:`napari_cellseg.training.regions`; without one the whole image counts).
:func:`scan_training_folders` checks every pair and reports *all* problems at once in one
:class:`DatasetError`, so a user fixes a data set in one pass rather than one error per run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_cellseg.errors import CellsegError, ImageReadError
from napari_cellseg.inference.preprocess import iter_planes, plane_count, to_model_input
from napari_cellseg.io.images import (
    LABEL_SUFFIXES,
    SUPPORTED_IMAGE_SUFFIXES,
    ImageData,
    read_image,
    read_labels,
)
from napari_cellseg.training.regions import REGIONS_DIR, read_region

if TYPE_CHECKING:
    from napari_cellseg.models.card import ModelCard

__all__ = [
    "MASK_SUFFIXES",
    "DatasetError",
    "TrainingPair",
    "load_input",
    "load_pair",
    "load_region",
    "scan_training_folders",
]

MASK_SUFFIXES: tuple[str, ...] = LABEL_SUFFIXES
"""File name endings accepted in a training folder's ``masks/``."""

_READ_THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class TrainingPair:
    """One training image and its instance mask.

    Attributes
    ----------
    image_path, mask_path : pathlib.Path
        The image and mask files.
    dataset : str
        Name of the training folder the pair comes from.
    name : str
        The shared file name without suffix.
    region_path : pathlib.Path or None
        The region mask (``regions/<name>.tif``): only its non-zero pixels were checked and
        count in training; ``None``: the whole image counts.
    """

    image_path: Path
    mask_path: Path
    dataset: str
    name: str
    region_path: Path | None = None


class DatasetError(CellsegError):
    """A training data set has problems; the message lists every one, one per line.

    Attributes
    ----------
    problems : list of str
        One line per problem, each starting with the file or folder concerned.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        header = f"the training data have {n} problem{'s' * (n != 1)}; fix them and try again:"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))


def _stem(path: Path) -> str:
    """File name without suffix (``.ome.tif`` counts as one suffix)."""
    stem = path.stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def _list_files(folder: Path, suffixes: tuple[str, ...], problems: list[str]) -> dict[str, Path]:
    """Files of ``folder`` with one of ``suffixes`` by stem; hidden and other files skipped."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in suffixes:
            continue
        stem = _stem(path)
        if stem in found:
            problems.append(
                f"{path}: another file has the same name without suffix ({found[stem].name}); "
                "keep only one of them"
            )
            continue
        found[stem] = path
    return found


def _plane_shape(image: ImageData) -> tuple[int, int]:
    return image.data.shape[image.axes.index("Y")], image.data.shape[image.axes.index("X")]


def _squeeze_labels(labels: np.ndarray) -> np.ndarray | None:
    """A 2-D label image, or None when it is a stack of several planes."""
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    return labels if labels.ndim == 2 else None


def _check_pair(pair: TrainingPair) -> list[str]:
    """Every problem of one pair (unreadable files, stacks, sizes, label values)."""
    problems: list[str] = []
    image_shape = mask_shape = None
    try:
        image = read_image(pair.image_path)
        planes = plane_count(image.data.shape, image.axes)
        if planes > 1:
            problems.append(
                f"{pair.image_path}: is a stack of {planes} planes (axes {image.axes}, shape "
                f"{image.data.shape}); training needs 2-D images: save each plane as a file"
            )
        else:
            image_shape = _plane_shape(image)
    except ImageReadError as exc:
        problems.append(str(exc))
    try:
        labels = _squeeze_labels(read_labels(pair.mask_path))
        if labels is None:
            problems.append(
                f"{pair.mask_path}: is a stack of label images; training needs one 2-D mask "
                "per image"
            )
        else:
            mask_shape = labels.shape
    except ImageReadError as exc:
        problems.append(str(exc))
    if image_shape is not None and mask_shape is not None and image_shape != mask_shape:
        problems.append(
            f"{pair.mask_path}: size {mask_shape[0]} x {mask_shape[1]} differs from its image "
            f"{pair.image_path.name} ({image_shape[0]} x {image_shape[1]}, Y x X)"
        )
    if pair.region_path is not None and image_shape is not None:
        try:
            read_region(pair.region_path, image_shape)
        except CellsegError as exc:
            problems.append(str(exc))
    return problems


def _scan_folder(folder: Path, problems: list[str]) -> list[TrainingPair]:
    if not folder.exists():
        problems.append(f"{folder}: folder not found")
        return []
    if not folder.is_dir():
        problems.append(f"{folder}: is a file; give a folder holding images/ and masks/")
        return []
    images_dir, masks_dir = folder / "images", folder / "masks"
    missing = [d for d in (images_dir, masks_dir) if not d.is_dir()]
    for d in missing:
        problems.append(
            f"{folder}: no {d.name}/ subfolder; a training folder holds images/<name>.png "
            "and masks/<name>.tif"
        )
    if missing:
        return []
    images = _list_files(images_dir, SUPPORTED_IMAGE_SUFFIXES, problems)
    masks = _list_files(masks_dir, MASK_SUFFIXES, problems)
    if not images:
        problems.append(
            f"{images_dir}: no images (supported types: {', '.join(SUPPORTED_IMAGE_SUFFIXES)})"
        )
    pairs = []
    for stem, image_path in images.items():
        if stem not in masks:
            problems.append(f"{image_path}: no mask; expected masks/{stem}.tif")
            continue
        pairs.append(TrainingPair(image_path, masks[stem], folder.name, stem))
    for stem, mask_path in masks.items():
        if stem not in images:
            problems.append(f"{mask_path}: mask without an image named '{stem}' in images/")
    if (folder / REGIONS_DIR).is_dir():
        regions = _list_files(folder / REGIONS_DIR, MASK_SUFFIXES, problems)
        for stem, region_path in regions.items():
            if stem not in images:
                problems.append(
                    f"{region_path}: region mask without an image named '{stem}' in images/"
                )
        pairs = [replace(p, region_path=regions.get(p.name)) for p in pairs]
    return pairs


def scan_training_folders(folders: Sequence[str | os.PathLike[str]]) -> list[TrainingPair]:
    """Find and check the image/mask pairs of one or more training folders.

    Every image and mask is read once to check it: readable, a single 2-D plane, mask of the
    same height and width as the image, integer non-negative labels.

    Parameters
    ----------
    folders : sequence of path
        Folders each holding ``images/`` and ``masks/``; the pair's ``dataset`` is the
        folder's name. A folder given twice is used once.

    Returns
    -------
    list of TrainingPair
        Sorted by dataset, then name.

    Raises
    ------
    DatasetError
        Listing every problem found, one per line, each naming its file or folder: missing
        folder or subfolder, no images, image without mask, mask without image, two files with
        the same name, unreadable or empty file, stack instead of a 2-D image, size mismatch,
        non-integer or negative labels.
    """
    problems: list[str] = []
    if not folders:
        raise DatasetError(["no training folders given: pass folders with images/ and masks/"])
    pairs: list[TrainingPair] = []
    seen: set[Path] = set()
    for folder in folders:
        path = Path(folder)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        pairs.extend(_scan_folder(path, problems))
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        for pair_problems in pool.map(_check_pair, pairs):
            problems.extend(pair_problems)
    if problems:
        raise DatasetError(sorted(problems))  # grouped by folder and file
    return sorted(pairs, key=lambda p: (p.dataset, p.name, str(p.image_path)))


def load_region(pair: TrainingPair, shape: tuple[int, int]) -> np.ndarray | None:
    """The pair's region mask as bool ``shape`` (``None`` when the whole image counts).

    Raises
    ------
    CellsegError
        One line naming the region file when it is unreadable, not of size ``shape`` (the
        image's), or empty (:func:`~napari_cellseg.training.regions.read_region`).
    """
    if pair.region_path is None:
        return None
    return read_region(pair.region_path, tuple(shape))


def load_pair(
    pair: TrainingPair, card: ModelCard, *, channels: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as a network input and its instance labels.

    Parameters
    ----------
    pair : TrainingPair
        The image and mask files.
    card : ModelCard
        Gives ``input_channels``, ``channel_handling`` and ``normalisation``.
    channels : sequence of int, optional
        Image channel indices, one per model channel
        (see :func:`~napari_cellseg.inference.preprocess.to_model_input`).

    Returns
    -------
    image : numpy.ndarray
        float32 ``(C, H, W)``, mapped and normalised as the model card says.
    instances : numpy.ndarray
        int32 ``(H, W)`` instance labels.

    Raises
    ------
    CellsegError
        If a file cannot be read, the image is a stack, the mask is not 2-D or the sizes
        differ (``ImageReadError`` for unreadable files).
    """
    x = load_input(pair, card, channels=channels)
    labels = _squeeze_labels(read_labels(pair.mask_path))
    if labels is None:
        raise CellsegError(f"{pair.mask_path}: is a stack; training needs one 2-D mask per image")
    if labels.shape != x.shape[1:]:
        raise CellsegError(
            f"{pair.mask_path}: size {labels.shape[0]} x {labels.shape[1]} differs from its "
            f"image {pair.image_path.name} ({x.shape[1]} x {x.shape[2]}, Y x X)"
        )
    if labels.size and int(labels.max()) > np.iinfo(np.int32).max:
        raise CellsegError(f"{pair.mask_path}: labels larger than 2**31 - 1 are not supported")
    return x, labels.astype(np.int32, copy=False)


def load_input(
    pair: TrainingPair, card: ModelCard, *, channels: Sequence[int] | None = None
) -> np.ndarray:
    """A pair's image alone, as :func:`load_pair` reads it (the mask is not read)."""
    image = read_image(pair.image_path)
    planes = plane_count(image.data.shape, image.axes)
    if planes != 1:
        raise CellsegError(
            f"{pair.image_path}: is a stack of {planes} planes (axes {image.axes}); training "
            "needs 2-D images: save each plane as its own file"
        )
    _, plane = next(iter_planes(image.data, image.axes))
    try:
        return to_model_input(
            plane,
            input_channels=card.input_channels,
            channel_handling=card.channel_handling,
            normalisation=card.normalisation,
            channels=channels,
        )
    except CellsegError as exc:
        raise CellsegError(f"{pair.image_path}: {exc}") from exc
