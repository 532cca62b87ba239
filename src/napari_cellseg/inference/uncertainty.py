"""How unsure the model is about each object of an image, and about the image as a whole.

The image is segmented several times, each time flipped or transposed first (the copies of
test-time augmentation, :data:`~napari_cellseg.inference.model_runner.TTA_TRANSFORMS`),
and the copies' labels are brought back onto the image. Each object of the reference
labels (the first copy's, or labels the caller gives) gets up to three signals in [0, 1]:

- ``tta``: 1 - the mean, over the copies, of the best IoU of a copy's object with it
  (copies that disagree on the object's shape, or miss it);
- ``boundary`` (models with a probability map, e.g. U-Net): 1 - the probability margin
  around the object, the mean of how far the mean foreground probability inside it stays
  above the threshold and in a 2-pixel ring of background around it below it (each
  scaled to [0, 1]);
- ``detection`` (models that score their objects, e.g. Mask R-CNN): 1 - the detection
  score of the first copy's object that matches it.

An object's uncertainty is the largest of its signals; its reason names that signal.
Models that score their objects also report the candidates the first copy found just below
the score threshold (between half of it and it) where the labels have no object: each is a
:class:`RankedObject` with ``label`` 0 ("possible missed object"), its uncertainty
``0.5 * score / threshold`` (a candidate at the threshold doubts as much as an object kept
at it with score 0.5).
The image's uncertainty is ``0.5 * top + 0.5 * fraction``: ``top`` the mean of the
:data:`TOP_K` largest object uncertainties (all objects if fewer), ``fraction`` the part of
the foreground (pixels any copy calls foreground) on which the copies disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_cellseg.device import resolve_device
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, Progress, drain, relay
from napari_cellseg.inference.api import iter_predict
from napari_cellseg.inference.image_groups import group_key, images_per_group, iter_predict_images
from napari_cellseg.inference.model_runner import TTA_TRANSFORMS
from napari_cellseg.inference.postprocess import object_probability
from napari_cellseg.inference.preprocess import resolve_axes
from napari_cellseg.inference.uncertainty_signals import (
    TOP_K,
    RankedObject,
    disagreement,
    image_score,
    score_objects,
)
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams

__all__ = [
    "DEFAULT_COPIES",
    "TOP_K",
    "ImageUncertainty",
    "RankedObject",
    "image_score",
    "iter_uncertainty",
    "rank_objects",
    "score_objects",
]

#: Copies compared when ``params.tta`` is 1 (each costs one run of the model).
DEFAULT_COPIES = 4


@dataclass
class ImageUncertainty:
    """What :func:`iter_uncertainty` returns for one image.

    Attributes
    ----------
    score : float
        The image's uncertainty in [0, 1] (the module docstring gives the formula).
    reason : str
        Why, in words.
    objects : list of RankedObject
        Most uncertain first.
    uncertain_fraction : float
        The part of the foreground on which the copies disagree.
    labels : numpy.ndarray
        The reference labels the objects' ids refer to.
    copies : int
        How many copies were compared.
    diameter : float or None
        The object diameter (px of the image) the copies were segmented at: given, or the
        model's estimate; ``None``: not rescaled for a size (``"off"``, or nothing found to
        estimate it from).
    """

    score: float
    reason: str
    objects: list[RankedObject]
    uncertain_fraction: float
    labels: np.ndarray = field(repr=False)
    copies: int = 1
    diameter: float | None = None


def _transformed(image: np.ndarray, transform: tuple[bool, ...], ya: int, xa: int) -> np.ndarray:
    """``image`` transposed (Y <-> X), then flipped along Y and/or X, as the runner does."""
    transpose, flip_rows, flip_columns = transform
    out = np.swapaxes(image, ya, xa) if transpose else image
    out = np.flip(out, ya) if flip_rows else out
    out = np.flip(out, xa) if flip_columns else out
    return np.ascontiguousarray(out)


def _back(array: np.ndarray, transform: tuple[bool, ...]) -> np.ndarray:
    """An output (``(..., Y, X)``) of a transformed image, back on the image's grid.

    >>> a = np.arange(6).reshape(2, 3)
    >>> all((_back(_transformed(a, t, 0, 1), t) == a).all() for t in TTA_TRANSFORMS)
    True
    """
    transpose, flip_rows, flip_columns = transform
    out = np.flip(array, -1) if flip_columns else array
    out = np.flip(out, -2) if flip_rows else out
    out = np.swapaxes(out, -1, -2) if transpose else out
    return np.ascontiguousarray(out)


def _planes(array: np.ndarray | None) -> list[Any]:
    """The ``(Y, X)`` planes of a ``(..., Y, X)`` array (``[None]`` for None)."""
    if array is None:
        return [None]
    return list(np.asarray(array).reshape((-1, *np.shape(array)[-2:])))


def _matched_scores(reference: np.ndarray, scored: np.ndarray, scores: dict[int, float]) -> dict:
    """The score of each reference object: that of the scored object covering most of it."""
    out = {}
    for index, box in enumerate(ndi.find_objects(reference)):
        if box is None:
            continue
        mask = reference[box] == index + 1
        under = np.bincount(scored[box][mask].ravel())
        under[0] = 0
        if under.any() and int(under.argmax()) in scores:
            out[index + 1] = scores[int(under.argmax())]
    return out


def iter_uncertainty(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    *,
    labels: np.ndarray | None = None,
    copies: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    pixel_size_um: float | Sequence[float] | None = None,
) -> Generator[Progress | Notice, None, ImageUncertainty]:
    """Segment ``image`` as several augmented copies and score how much they disagree.

    Parameters
    ----------
    image : array-like
        As :func:`~napari_cellseg.inference.iter_predict` takes it (read into memory here).
    model : str, Path or LoadedModel
        A weight file or a loaded model.
    params : PredictParams, optional
        As for prediction; each copy runs with ``tta=1``. ``params.tta`` > 1 sets the number
        of copies (else :data:`DEFAULT_COPIES`).
    labels : numpy.ndarray, optional
        The labels whose objects are scored (e.g. a corrected segmentation; the label shape
        of the image). Default: the first copy's (the image as it is, no augmentation).
    copies : int, optional
        Copies to compare, 2 to 8 (overrides ``params.tta``).
    should_stop : callable, optional
        Polled at every yield; when it returns True, :class:`CancelledError` is raised.
    pixel_size_um : float or (float, float), optional
        For a diameter in micrometres.

    Yields
    ------
    Progress or Notice
        Progress of stage ``"copies"``: hundredths of copies done.

    Returns
    -------
    ImageUncertainty
    """
    params = params or PredictParams()
    n = int(copies or (params.tta if params.tta > 1 else DEFAULT_COPIES))
    if not 2 <= n <= len(TTA_TRANSFORMS):
        raise CellsegError(f"uncertainty compares 2 to {len(TTA_TRANSFORMS)} copies, got {n}")
    image = np.asarray(image)
    axes = resolve_axes(image.shape, params.axes)
    ya, xa = axes.index("Y"), axes.index("X")
    run = replace(params, axes=axes, tta=1, keep_probabilities=True)
    copy_labels: list[np.ndarray] = []  # each copy's labels and foreground, on the image's grid
    maps: list[np.ndarray | None] = []

    def keep(prediction: Any, transform: tuple[bool, ...]) -> None:
        copy_labels.append(_back(prediction.labels, transform))
        fg = object_probability(prediction.probabilities, prediction.card.outputs)
        maps.append(None if fg is None else _back(fg, transform))
        prediction.probabilities = None  # kept: labels and foreground; copy 0's table and
        if not any(hasattr(r, "scores") for r in prediction.raw):  # detections (candidates)
            prediction.raw = []

    work = iter_predict(image, model, run, should_stop=should_stop, pixel_size_um=pixel_size_um)
    first = yield from relay(work, _copies_progress(0, 1, n, notices=True))
    # the other copies: the same diameter and thresholds, nothing re-estimated
    size = first.diameter if first.diameter is not None else "off"
    run = replace(run, diameter=size, post=first.params.post)
    keep(first, TTA_TRANSFORMS[0])
    yield Progress("copies", 100, n * 100, f"copy 1/{n}")
    done = 1
    for group in _copy_groups(image, TTA_TRANSFORMS[1:n], ya, xa, first.card, run, pixel_size_um):
        sources = [source for source, _ in group]
        convert = _copies_progress(done, len(group), n)
        if len(group) > 1:  # small copies of one shape through the network together
            work = iter_predict_images(
                sources, model, run, pixel_size_um=pixel_size_um, should_stop=should_stop
            )
            predictions = yield from relay(work, convert)
        else:
            work = iter_predict(
                sources[0], model, run, should_stop=should_stop, pixel_size_um=pixel_size_um
            )
            predictions = [(yield from relay(work, convert))]
        for prediction, (_, transform) in zip(predictions, group, strict=True):
            keep(prediction, transform)
        done += len(group)
        yield Progress("copies", done * 100, n * 100, f"copy {done}/{n}")
    return _assess(first, copy_labels, maps, labels, run)


def _copies_progress(start: int, count: int, n: int, notices: bool = False) -> Callable:
    """Progress of copies ``start + 1 .. start + count`` of ``n`` as hundredths of copies
    (``notices``: pass the run's notices on, as the first copy does)."""
    name = f"copy {start + 1}/{n}" if count == 1 else f"copies {start + 1}-{start + count}/{n}"

    def convert(event: Any) -> Any:
        if isinstance(event, Progress) and event.stage != "load" and event.fraction < 1:
            return Progress(
                "copies", start * 100 + round(100 * count * event.fraction), n * 100, name
            )
        return event if isinstance(event, Notice) and notices else None

    return convert


def _copy_groups(
    image: np.ndarray,
    transforms: Sequence[tuple[bool, ...]],
    ya: int,
    xa: int,
    card: Any,
    run: PredictParams,
    pixel_size_um: Any,
) -> Generator[list[tuple[np.ndarray, tuple[bool, ...]]], None, None]:
    """The transformed copies in groups that can go through the network together
    (:func:`~.image_groups.group_key`: small copies of one shape; else one at a time, each
    yielded as soon as it is made, so that a large image is never held twice)."""
    device = resolve_device(run.device)
    group: list[tuple[np.ndarray, tuple[bool, ...]]] = []
    key: tuple | None = None
    for transform in transforms:
        source = _transformed(image, transform, ya, xa)
        this = group_key(source, card, run, pixel_size_um=pixel_size_um)
        if group and (this != key or len(group) >= images_per_group(device, card, run, key)):
            yield group
            group = []
        if this is None:
            yield [(source, transform)]
            continue
        group.append((source, transform))
        key = this
    if group:
        yield group


def _assess(
    first: Any,
    copy_labels: list[np.ndarray],
    maps: list[np.ndarray | None],
    labels: np.ndarray | None,
    run: PredictParams,
) -> ImageUncertainty:
    """Score the copies (labels and foreground on the image's grid; ``first``: copy 0)."""
    if labels is not None and np.shape(labels) != np.shape(first.labels):
        raise CellsegError(
            f"the labels' shape {np.shape(labels)} does not match the image's label shape "
            f"{np.shape(first.labels)}; choose the labels that belong to this image"
        )
    reference = np.asarray(labels) if labels is not None else copy_labels[0]
    others = copy_labels if labels is not None else copy_labels[1:]
    foreground = np.mean(maps, axis=0) if all(m is not None for m in maps) else None
    table = first.table
    objects: list[RankedObject] = []
    fg_planes = _planes(foreground)
    copy_planes = [_planes(c) for c in copy_labels]
    for plane, ref in enumerate(_planes(reference)):
        scores = None
        if "score" in table:
            rows = np.flatnonzero(table["plane"] == plane)
            scores = {int(table["label"][r]): float(table["score"][r]) for r in rows}
            if labels is not None:
                scores = _matched_scores(ref, copy_planes[0][plane], scores)
        objects += _candidates(first, plane, ref, run)
        objects += score_objects(
            ref,
            [c[plane] for c in copy_planes[len(copy_planes) - len(others) :]],
            foreground=fg_planes[plane] if foreground is not None else None,
            threshold=run.post.prob_threshold,
            scores=scores,
            plane=plane,
        )
    objects.sort(key=lambda o: (-o.score, o.plane, o.label))
    fraction = disagreement([c.reshape(-1) for c in copy_labels])
    score, reason = image_score(objects, fraction)
    size = None if first.diameter is None else float(first.diameter)
    return ImageUncertainty(score, reason, objects, fraction, reference, len(copy_labels), size)


def _candidates(prediction: Any, plane: int, reference: np.ndarray, run: Any) -> list:
    """Detections just below the score threshold where ``reference`` has no object."""
    raw = prediction.raw[plane] if plane < len(prediction.raw) else None
    if raw is None or not hasattr(raw, "scores") or not len(raw):
        return []
    threshold = run.post.score_threshold
    scale = prediction.scale or 1.0
    found: list[RankedObject] = []
    taken = np.zeros(reference.shape, bool)
    for i in np.argsort(-raw.scores, kind="stable"):
        score = float(raw.scores[i])
        if not threshold / 2 <= score < threshold:
            continue
        height, width = reference.shape
        y0, x0, y1, x1 = np.rint(raw.boxes[i] / scale).astype(int).tolist()
        y0, x0 = min(max(y0, 0), height - 1), min(max(x0, 0), width - 1)
        y1, x1 = min(max(y1, y0 + 1), height), min(max(x1, x0 + 1), width)
        cy, cx = (y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2
        if reference[cy, cx] or taken[cy, cx]:
            continue  # an object is there already, or a better candidate
        taken[y0:y1, x0:x1] = True
        area = int((raw.masks[i] > run.post.mask_threshold).sum() / scale**2)
        found.append(
            RankedObject(
                0, plane, round(0.5 * score / threshold, 4),
                f"possible missed object (score {score:.2f}, below {threshold:.2f})",
                (y0, x0, y1, x1), ((y0 + y1) / 2, (x0 + x1) / 2), area, {"candidate": score},
            )
        )  # fmt: skip
    return found


def rank_objects(
    image: Any,
    model: str | Path | LoadedModel,
    params: PredictParams | None = None,
    **kwargs: Any,
) -> list[RankedObject]:
    """The objects of ``image``, most uncertain first (:func:`iter_uncertainty`, drained).

    ``kwargs`` go to :func:`iter_uncertainty` (``labels``, ``copies``, ``should_stop``...).
    """
    return drain(iter_uncertainty(image, model, params, **kwargs)).objects
