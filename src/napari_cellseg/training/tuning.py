"""Choosing a model's post-processing thresholds on labelled images.

The network runs once per image; every candidate setting from a grid is then applied to its
kept output (:func:`napari_cellseg.inference.planes.reapply`, no network) and scored with
DSB AP against the ground truth. Scores are summed image by image, so only one image's
output is held at a time. The best setting goes into the model card
(:attr:`napari_cellseg.models.card.ModelCard.postprocess`), where inference picks it up
whenever the user has not set thresholds: StarDist's ``optimize_thresholds`` does the same
for its models.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg import families
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Progress, relay
from napari_cellseg.inference import api
from napari_cellseg.inference.api import iter_predict
from napari_cellseg.inference.planes import Prediction, reapply
from napari_cellseg.labels.metrics import dsb_ap
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel, load_weights, save_weights, stores_float16
from napari_cellseg.params import PostprocessParams, PredictParams, TrainParams, describe_post
from napari_cellseg.training.validation import ValidationImage


@dataclass(frozen=True)
class TuningResult:
    """What tuning found.

    Attributes
    ----------
    post : PostprocessParams
        The best setting (the base setting when nothing scored higher).
    changed : dict
        The values of ``post`` that differ from the base setting.
    score, base_score : float
        Mean DSB AP over the images with ``post`` and with the base setting.
    n_images, n_candidates : int
        Images scored, settings tried.
    ranking : list of dict
        The five best settings with their scores, best first.
    """

    post: PostprocessParams
    changed: dict[str, Any]
    score: float
    base_score: float
    n_images: int
    n_candidates: int
    ranking: list[dict[str, Any]]


def default_grid(card: ModelCard) -> dict[str, tuple[float, ...]]:
    """The candidate values for ``card``'s kind of model (``FamilySpec.tuning_grids``).

    Each grid holds the library defaults, so the tuned setting never scores below them on
    the tuning images.
    """
    return families.family_spec(card.family).tuning_grid(card.outputs)


def candidates(
    base: PostprocessParams, grid: Mapping[str, Sequence[float]]
) -> list[PostprocessParams]:
    """``base`` first, then every combination of ``grid`` values (duplicates dropped).

    Raises
    ------
    CellsegError
        If the grid names a value that is not a post-processing parameter or is empty.
    """
    known = {f.name: type(getattr(base, f.name)) for f in fields(PostprocessParams)}
    unknown = sorted(set(grid) - set(known))
    if unknown:
        raise CellsegError(
            f"cannot tune {', '.join(unknown)}: tunable values are {', '.join(known)}"
        )
    empty = [name for name, values in grid.items() if len(values) == 0]
    if empty:
        raise CellsegError(f"no candidate values for {', '.join(empty)}")
    names = list(grid)
    out = [base]
    for combo in itertools.product(*(grid[name] for name in names)):
        post = replace(base, **{n: known[n](v) for n, v in zip(names, combo, strict=True)})
        if post not in out:
            out.append(post)
    return out


def iter_tune_postprocess(
    images: Sequence[ValidationImage | Callable[[], ValidationImage]],
    model: LoadedModel,
    *,
    params: PredictParams | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, TuningResult]:
    """Find the post-processing setting with the best mean DSB AP on ``images``.

    Parameters
    ----------
    images : sequence of ValidationImage, or of callables returning one
        Labelled images (as read by
        :func:`napari_cellseg.training.validation.read_validation_images`).
        A callable is called when its turn comes, so a folder can be read one image at a
        time.
    model : LoadedModel
        The model; its card's own post-processing values are the base setting.
    params : PredictParams, optional
        Device and tiling of the network runs (their ``post`` is ignored).
    grid : mapping, optional
        Candidate values per parameter name; :func:`default_grid` when omitted.
    should_stop : callable, optional
        Polled at every tile and image; when it returns True, :class:`CancelledError` is
        raised.

    Yields
    ------
    Progress
        The tiles of the image being segmented (``stage="tiles"``), then one event per image
        (``stage="tuning"``, ``done`` of ``len(images)``).

    Returns
    -------
    TuningResult
        The best setting, its score and the base setting's score.

    Raises
    ------
    CellsegError
        If there are no images or the grid is malformed.
    """
    if not images:
        raise CellsegError("no labelled images to tune the thresholds on")
    base = model.card.post_params()
    settings = candidates(base, grid if grid is not None else default_grid(model.card))
    params = params or PredictParams()
    totals = np.zeros(len(settings))
    for done, entry in enumerate(images):
        if should_stop is not None and should_stop():
            raise CancelledError("tuning was stopped")
        item = entry() if callable(entry) else entry
        shape = np.shape(item.image)
        if api.in_blocks(shape, item.axes):  # too large to keep its output
            raise CellsegError(
                f"{item.name}: a {shape[0]}×{shape[1]} plane is too large to tune on "
                f"(above {api.DEFAULT_BLOCKS.block_pixels} pixels); tune on crops of it"
            )
        run = replace(params, axes=item.axes, post=base)
        prediction = yield from _predict(item.image, model, run, should_stop)
        for i, post in enumerate(settings):
            labels = prediction.labels if post == base else reapply(prediction, post).labels
            totals[i] += dsb_ap(*item.scored(labels))
        yield Progress("tuning", done + 1, len(images), f"{item.name}: {len(settings)} settings")
    scores = totals / len(images)
    best = int(np.argmax(scores))  # the first of equal scores: the base setting wins ties
    order = np.argsort(-scores, kind="stable")[:5]
    return TuningResult(
        post=settings[best],
        changed=_changed(base, settings[best]),
        score=float(scores[best]),
        base_score=float(scores[0]),
        n_images=len(images),
        n_candidates=len(settings),
        ranking=[{**_changed(base, settings[i]), "dsb_ap": float(scores[i])} for i in order],
    )


def _predict(
    image: Any, model: LoadedModel, params: PredictParams, should_stop: Callable[[], bool] | None
) -> Generator[Progress, None, Prediction]:
    """Segment ``image``, passing its tile progress on; the Prediction."""

    def tiles(event: Any) -> Progress | None:
        return event if isinstance(event, Progress) and event.stage == "tiles" else None

    return (yield from relay(iter_predict(image, model, params, should_stop=should_stop), tiles))


def tuned_card(card: ModelCard, result: TuningResult, data: str, *, tta: int = 1) -> ModelCard:
    """``card`` with ``result``'s setting as its post-processing values, and how it was found.

    ``tta`` > 1 records that the network ran with that test-time augmentation.
    """
    values = {**card.postprocess, **result.changed}
    tuning = {
        "data": data,
        "n_images": result.n_images,
        "n_candidates": result.n_candidates,
        "metric": "dsb_ap",
        "score": result.score,
        "base_score": result.base_score,
        **({"tta": tta} if tta > 1 else {}),
    }
    provenance = {**card.provenance, "postprocess_tuning": tuning}
    return replace(card, postprocess=values, provenance=provenance)


def tuned_copy_path(weights: Path, elsewhere: Path | None = None) -> Path:
    """``<stem>-tuned.safetensors`` beside ``weights``; ``-tuned-2``… when that is taken.

    An smp folder's copy is named after the folder. An existing file is never chosen.
    Weights that ship with napari-cellseg (the demo models) get their copy in ``elsewhere``
    (default: the current folder) instead: nothing is written into the installed package,
    and the copy is not listed as a demo model.
    """
    stem = weights.stem if weights.is_file() else weights.name
    folder = (elsewhere or Path.cwd()) if _bundled(weights) else weights.parent
    path, n = folder / f"{stem}-tuned.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}-tuned-{n}.safetensors", n + 1
    return path


def _bundled(weights: Path) -> bool:
    """Whether ``weights`` lies in the installed package or its sample data folder."""
    import napari_cellseg
    from napari_cellseg.io.samples import sample_data_dir

    where = weights.resolve()
    roots = [Path(napari_cellseg.__file__).parent.resolve()]
    with contextlib.suppress(CellsegError):  # a broken install: no sample folder to protect
        roots.append(sample_data_dir())
    return any(where.is_relative_to(root) for root in roots)


def write_tuned(
    model: LoadedModel, result: TuningResult, data: str, out: Path, *, like: Path, tta: int = 1
) -> Path:
    """Save ``model`` with ``result``'s thresholds in its card (:func:`tuned_card`) to ``out``.

    Tensors are stored as float16 when ``like`` (the weight file tuned) stores them so.
    """
    card = tuned_card(model.card, result, data, tta=tta)
    return save_weights(model.model, card, out, half=stores_float16(like))


def _changed(base: PostprocessParams, post: PostprocessParams) -> dict[str, Any]:
    return {
        f.name: getattr(post, f.name)
        for f in fields(PostprocessParams)
        if getattr(post, f.name) != getattr(base, f.name)
    }


def iter_tune_saved(
    out: Path,
    val_images: Sequence[ValidationImage],
    params: TrainParams,
    device: Any,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Any, None, str]:
    """Choose the saved model's thresholds on the validation images; rewrite ``out`` if better.

    Stopped midway, ``out`` keeps the trained weights with the thresholds they had.
    """
    loaded = load_weights(out, device=device)
    tile = params.val_tile_size
    run = PredictParams(device=str(device), tile_size=tile, overlap=None)
    result = yield from iter_tune_postprocess(
        val_images, loaded, params=run, should_stop=should_stop
    )
    if not result.changed:
        return f"thresholds: none of {result.n_candidates} settings beat the model's own"
    write_tuned(loaded, result, f"{len(val_images)} validation images", out, like=out)
    return (
        f"thresholds tuned on the validation images: {describe_post(result.changed)} "
        f"(DSB AP {result.base_score:.3f} → {result.score:.3f}; stored in {out.name})"
    )


__all__ = [
    "TuningResult",
    "candidates",
    "default_grid",
    "iter_tune_postprocess",
    "iter_tune_saved",
    "tuned_card",
    "tuned_copy_path",
    "write_tuned",
]
