"""What to correct next: images ranked by the model's uncertainty (as CSV: :mod:`.ranking_csv`).

Each image is scored by :func:`napari_cellseg.inference.uncertainty.iter_uncertainty`
(augmented copies compared; the formula is in that module). :func:`iter_rank_images` yields
progress, can be stopped at any yield, and returns the images in ranking order; an
image that cannot be read or segmented is reported (a warning :class:`Notice`) and left out.
With ``tile``, the tiles of each image are ranked instead (a large image: where to start).

Three orders (:data:`RANK_ORDERS`): ``"total"`` (the default) ranks by
:attr:`RankedImage.total_doubt`, the sum of the doubts of an image's objects and possible
missed objects: where there is the most to correct. ``"mean"`` ranks by
:attr:`RankedImage.score`, the doubt of its worst objects and the part of the foreground the
copies disagree on: where the model is least sure per object. The mean order sends the user
to sparse images first (little to correct, little to learn from); in ``bench/hitl.py`` the
images it chose taught less than 3 random ones. ``"spread"`` (:mod:`.spread`) weighs the
total doubt by how typical an image is of the folder and how unlike the images ranked
before it: for choosing a few images to correct and fine-tune on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.batch.jobs import file_params
from napari_cellseg.batch.reading import read_input
from napari_cellseg.batch.repeats import repeated_warning, repeats_summary
from napari_cellseg.batch.spread import appearance, spread_order
from napari_cellseg.diameters import parse_diameter
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress, drain, relay
from napari_cellseg.inference.uncertainty import RankedObject, iter_uncertainty
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams

__all__ = [
    "RANK_ORDERS",
    "RankedImage",
    "iter_rank_images",
    "ordered",
    "rank_images",
]

RANK_ORDERS = ("total", "mean", "spread")
"""How images are ranked: by their total doubt (default), their mean doubt, or spread."""


@dataclass
class RankedImage:
    """One image of a ranking.

    Attributes
    ----------
    path : pathlib.Path
        The image file.
    score : float
        Uncertainty in [0, 1] (1: the most doubtful).
    reason : str
        Why, in words.
    objects : list of RankedObject
        Its objects, most uncertain first.
    uncertain_fraction : float
        The part of the foreground on which the augmented copies disagree.
    labels : numpy.ndarray or None
        The model's labels (the objects' ids refer to them), when asked to keep them.
    region : tuple of int or None
        For a tile of a large image: ``(y0, x0, y1, x1)`` in the image (the objects' boxes
        and centroids are in the image's coordinates; ``labels`` cover the tile only).
    features : numpy.ndarray or None
        How the image looks (:func:`.spread.appearance`); measured for the ``spread``
        order only.
    diameter : float or None
        The object diameter (px) it was segmented at: given, or the model's estimate
        (:attr:`.ImageUncertainty.diameter`).
    """

    path: Path
    score: float
    reason: str
    objects: list[RankedObject] = field(default_factory=list)
    uncertain_fraction: float = 0.0
    labels: np.ndarray | None = field(default=None, repr=False)
    region: tuple[int, int, int, int] | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    diameter: float | None = None

    @property
    def n_objects(self) -> int:
        """How many objects the model found (possible missed objects, label 0, not counted)."""
        return sum(o.label > 0 for o in self.objects)

    @property
    def total_doubt(self) -> float:
        """The sum of its objects' doubts, possible missed objects included.

        About how many of its objects need a correction, if every doubt were the chance
        that the object is wrong: many doubtful objects weigh more than one very doubtful.

        >>> o = RankedObject(1, 0, 0.25, "", (0, 0, 2, 2), (1.0, 1.0), 4)
        >>> RankedImage(Path("a.tif"), 0.3, "why", [o, o, o]).total_doubt
        0.75
        """
        return round(sum(o.score for o in self.objects), 4)


def iter_rank_images(
    paths: Sequence[str | os.PathLike[str]],
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    copies: int | None = None,
    keep_labels: bool = False,
    tile: int | None = None,
    order: str = "total",
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress | Notice, None, list[RankedImage]]:
    """Score every image; yield progress; return them in ``order``, first to correct first.

    Parameters
    ----------
    paths : sequence of path
        Image files.
    model : str, Path or LoadedModel
        A weight file or a loaded model (loaded once for all images).
    params : PredictParams, optional
        Prediction parameters; ``params.axes`` are the files' own (``--axes``).
    copies : int, optional
        Augmented copies compared per image (default: ``params.tta`` if > 1, else 4).
    keep_labels : bool
        Keep each image's labels in its :class:`RankedImage` (memory grows with the folder).
    tile : int, optional
        Rank the tiles of each image instead (``tile`` × ``tile`` pixels, the last row and
        column smaller), each as its own :class:`RankedImage` with its ``region``: for
        large images, read tile by tile.
    order : {"total", "mean", "spread"}
        Rank by :attr:`RankedImage.total_doubt` (where there is the most to correct), by
        :attr:`RankedImage.score` (the most doubtful per object; ties by the other), or
        ``spread``: total doubt weighed by how typical each image is of the folder and how
        unlike those ranked before it (:func:`.spread.spread_order`).
    should_stop : callable, optional
        Polled at every yield; when it returns True, :class:`CancelledError` is raised.

    Yields
    ------
    Progress or Notice
        Progress of stage ``"images"`` (thousandths of an image), and a warning for each
        image left out.

    Returns
    -------
    list of RankedImage
        Most to correct first (``order="total"``) or most doubtful first (``"mean"``);
        equal values in the order given.

    Raises
    ------
    CellsegError
        When no image is given, none could be scored, or ``order`` is unknown.
    """
    if order not in RANK_ORDERS:
        raise CellsegError(f"unknown ranking order {order!r}: use one of {', '.join(RANK_ORDERS)}")
    params = params or PredictParams()
    paths = [Path(p) for p in paths]
    if not paths:
        raise CellsegError("no images to rank: give a folder holding images, or image files")

    def check(event: Any) -> Any:
        if should_stop is not None and should_stop():
            raise CancelledError("ranking was stopped")
        return event

    if tile is not None and tile < 64:
        raise CellsegError(f"tiles for ranking must be at least 64 pixels, got {tile}")
    ranked: list[RankedImage] = []
    failed: list[str] = []
    warned: dict[str, list[str]] = {}  # a warning's text -> the images that had it
    n = len(paths)
    for i, path in enumerate(paths):
        yield check(Progress("images", i * 1000, n * 1000, path.name))
        try:
            image = read_input(path, axes=params.axes)
            run = file_params(params, image)
            regions = tiles_of(image.data.shape, image.axes, tile) if tile else [None]
            for k, region in enumerate(regions):
                name = path.name
                if region is not None:
                    name += f" [{region[0]}:{region[2]}, {region[1]}:{region[3]}]"

                span = 999 / len(regions)  # thousandths of the image per region
                convert = _converter(check, i * 1000 + k * span, span, n * 1000, name, warned)
                data = _crop(image.data, image.axes, region)
                work = iter_uncertainty(
                    data, model, run, copies=copies, should_stop=should_stop,
                    pixel_size_um=image.pixel_size_um,
                )  # fmt: skip
                result = yield from relay(work, convert)
                ranked.append(
                    RankedImage(
                        path, result.score, result.reason, _shifted(result.objects, region),
                        result.uncertain_fraction, result.labels if keep_labels else None,
                        region,
                        appearance(data, run.axes or image.axes, result.labels)
                        if order == "spread" else None,
                        result.diameter,
                    )
                )  # fmt: skip
        except CellsegError as error:
            failed.append(f"{path}: {error}")
            yield check(Notice(f"{path}: left out: {error}", "warning"))
            continue
    for note in repeats_summary(warned):
        yield check(note)
    yield check(Progress("images", n * 1000, n * 1000, "done"))
    if not ranked:
        raise CellsegError(f"none of the {n} image(s) could be ranked; the first: {failed[0]}")
    return ordered(ranked, order)


def ordered(ranked: Sequence[RankedImage], order: str = "total") -> list[RankedImage]:
    """``ranked`` sorted by total doubt (``"total"``), by score (``"mean"``), stable, or in
    ``"spread"`` order (by total doubt when an image has no features).

    >>> doubt = lambda s: RankedObject(1, 0, s, "", (0, 0, 2, 2), (1.0, 1.0), 4)
    >>> sparse = RankedImage(Path("sparse.tif"), 0.45, "", [doubt(0.9)])
    >>> dense = RankedImage(Path("dense.tif"), 0.2, "", [doubt(0.3)] * 10)
    >>> [r.path.name for r in ordered([sparse, dense])]
    ['dense.tif', 'sparse.tif']
    >>> [r.path.name for r in ordered([sparse, dense], "mean")]
    ['sparse.tif', 'dense.tif']
    """
    if order == "mean":
        return sorted(ranked, key=lambda r: (-r.score, -r.total_doubt))
    if order == "spread" and ranked and all(r.features is not None for r in ranked):
        features = np.stack([np.asarray(r.features, np.float64) for r in ranked])
        return [ranked[i] for i in spread_order([r.total_doubt for r in ranked], features)]
    return sorted(ranked, key=lambda r: (-r.total_doubt, -r.score))


def size_note(ranked: Sequence[RankedImage], given: Any, how: str) -> str | None:
    """The object size the ranking saw, when the user gave none (``given`` None or ``auto``).

    A model made for other objects (a nuclei model on glands) estimates the size of the
    objects it knows, and its doubt then counts those; given the size of the user's objects,
    it looks at them instead (``docs/benchmarks.md``: GlaS ranked at the glands' size).
    ``how`` says where to give the size. None when a size was given, or none was used.

    >>> images = [RankedImage(Path(f"{d}.tif"), 0.5, "", diameter=d) for d in (9, 11, 30)]
    >>> print(size_note(images, "auto", "--diameter N")[:72])
    the model saw objects about 11 px across (9 to 30 px in 3 images; no dia
    >>> size_note(images, 40, "--diameter N") is None
    True
    """
    if parse_diameter(given) not in (None, "auto"):
        return None
    sizes = [r.diameter for r in ranked if r.diameter is not None]
    if not sizes:
        return None
    low, high = min(sizes), max(sizes)
    spread = f"{low:.0f} to {high:.0f} px in {len(sizes)} images; " if high > 1.25 * low else ""
    return (
        f"the model saw objects about {float(np.median(sizes)):.0f} px across ({spread}no "
        f"diameter was given): if yours are another size, give it ({how}) and rank again, "
        "or the ranking counts the objects this model knows"
    )


def _converter(
    check: Callable[[Any], Any],
    start: float,
    span: float,
    total: int,
    name: str,
    warned: dict[str, list[str]],
) -> Callable[[Any], Any]:
    """An image's events as the ranking's: progress from ``start`` over ``span`` units; a
    warning an earlier image had is counted in ``warned`` instead (:mod:`.repeats`)."""

    def convert(event: Any) -> Any:
        if isinstance(event, Progress):
            return check(Progress("images", int(start + span * event.fraction), total, name))
        notice = Notice(f"{name}: {event.message}", event.level)
        return None if repeated_warning(notice, warned) else check(notice)

    return convert


def tiles_of(shape: Sequence[int], axes: str, tile: int) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, y1, x1)`` of the tiles of an image, row by row.

    >>> tiles = tiles_of((100, 150, 3), "YXS", 64)
    >>> len(tiles), tiles[0], tiles[-1]
    (6, (0, 0, 64, 64), (64, 128, 100, 150))
    """
    height, width = int(shape[axes.index("Y")]), int(shape[axes.index("X")])
    return [
        (y, x, min(y + tile, height), min(x + tile, width))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


def _crop(data: Any, axes: str, region: tuple[int, int, int, int] | None) -> np.ndarray:
    """``data`` (lazy or not) cut to ``region`` along its Y and X axes, in memory."""
    if region is None:
        return np.asarray(data)
    index = [slice(None)] * len(axes)
    index[axes.index("Y")] = slice(region[0], region[2])
    index[axes.index("X")] = slice(region[1], region[3])
    return np.asarray(data[tuple(index)])


def _shifted(objects: list[RankedObject], region: tuple[int, ...] | None) -> list[RankedObject]:
    """Objects of a tile, with boxes and centroids in the image's coordinates."""
    if region is None:
        return objects
    y, x = region[0], region[1]
    return [
        replace(
            o,
            bbox=(o.bbox[0] + y, o.bbox[1] + x, o.bbox[2] + y, o.bbox[3] + x),
            centroid=(o.centroid[0] + y, o.centroid[1] + x),
        )
        for o in objects
    ]


def rank_images(
    paths: Sequence[str | os.PathLike[str]],
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    **kwargs: Any,
) -> list[RankedImage]:
    """Run :func:`iter_rank_images` to the end: the images, most uncertain first."""
    return drain(iter_rank_images(paths, model, params, **kwargs))
