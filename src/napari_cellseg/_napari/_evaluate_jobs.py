"""The Evaluate dock's work, run in napari workers: metrics, model comparisons, tuning.

No Qt and no napari here: plain functions and generators over arrays and files.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg._napari._channels import model_channels
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Progress, relay
from napari_cellseg.io.images import LABEL_SUFFIXES, SUPPORTED_IMAGE_SUFFIXES
from napari_cellseg.labels.metrics import evaluate_pair, summarise
from napari_cellseg.params import PredictParams, describe_post


@dataclass(frozen=True)
class EvalImage:
    """One image to segment and its ground truth."""

    name: str
    data: Any
    axes: str | None
    ground_truth: np.ndarray
    signal: int | None = None  # an image layer's channel choice; None: as the card says
    helper: int | None = None

    def channels(self, card: Any) -> tuple[int, ...] | None:
        """``PredictParams.channels`` for a model with ``card`` (the Segment tab's mapping).

        >>> from types import SimpleNamespace as S
        >>> rgb = S(input_channels=3, channel_handling="rgb")
        >>> EvalImage("a", None, "CYX", None, 1, 0).channels(rgb)
        (1, 0, 1)
        >>> EvalImage("b", None, None, None).channels(rgb) is None
        True
        """
        if self.signal is None:
            return None
        return model_channels(self.signal, self.helper, card.input_channels, card.channel_handling)


@dataclass
class Comparison:
    """Metrics per model title and, per title, the predictions of each image."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, list[Any]] = field(default_factory=dict)


def _plain_labels(labels: Any, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype.kind not in "iub":
        raise CellsegError(f"{what} must hold integer labels, got {array.dtype}")
    return array


def evaluate_labels(ground_truth: Any, prediction: Any) -> dict[str, float]:
    """Metrics of one prediction against its ground truth (same shape)."""
    gt = _plain_labels(ground_truth, "the ground truth")
    pred = _plain_labels(prediction, "the prediction")
    if gt.shape != pred.shape:
        raise CellsegError(
            f"the prediction has shape {pred.shape} but the ground truth {gt.shape}: "
            "pick layers of the same image"
        )
    return summarise([evaluate_pair(gt, pred)])


def files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """The files of ``folder`` with one of ``suffixes``, keyed by name without suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CellsegError(f"{folder}: folder not found")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def matched(first: Path, second: Path, suffixes: tuple[Sequence[str], Sequence[str]]) -> list:
    """``(stem, file in first, file in second)`` for every stem found in both folders."""
    a, b = files_by_stem(first, suffixes[0]), files_by_stem(second, suffixes[1])
    # `cellseg predict` / `cellseg batch` write <stem>_labels.tif for <stem>.png
    a = {**{k.removesuffix("_labels"): v for k, v in a.items()}, **a}
    b = {**{k.removesuffix("_labels"): v for k, v in b.items()}, **b}
    stems = sorted(set(a) & set(b))
    if not stems:
        raise CellsegError(
            f"no file names in common between {first} and {second}: predictions and ground "
            "truth are matched by name without extension (a.tif ↔ a.png)"
        )
    return [(stem, a[stem], b[stem]) for stem in stems]


def iter_evaluate_folders(
    predictions: Path, ground_truth: Path
) -> Generator[Progress, None, dict[str, float]]:
    """Mean metrics over the label images of two folders, matched by name.

    Reads one pair at a time and yields a :class:`Progress` before each (the worker can stop
    there); returns the averaged metrics.
    """
    from napari_cellseg.io.images import read_labels

    pairs = matched(predictions, ground_truth, (LABEL_SUFFIXES, LABEL_SUFFIXES))
    results = []
    for i, (stem, pred, gt) in enumerate(pairs):
        yield Progress("images", i, len(pairs), f"scoring {stem} ({i + 1}/{len(pairs)})…")
        results.append(evaluate_labels(read_labels(gt), read_labels(pred)))
    yield Progress("images", len(pairs), len(pairs), f"scored {len(pairs)} image(s)")
    return summarise(results)


def folder_images(images: Path, ground_truth: Path) -> list[Callable[[], EvalImage]]:
    """Loaders of the images of a folder with their ground truth from another, matched by name.

    Only the file names are matched here; each loader reads its pair when called (in the
    worker), so a large folder is neither read on the GUI thread nor held in memory at once.
    """
    return [
        partial(_load_pair, stem, image, gt)
        for stem, image, gt in matched(
            images, ground_truth, (SUPPORTED_IMAGE_SUFFIXES, LABEL_SUFFIXES)
        )
    ]


def _load_pair(stem: str, image: Path, ground_truth: Path) -> EvalImage:
    from napari_cellseg.io.images import read_image, read_labels

    data = read_image(image)
    return EvalImage(stem, data.data, data.axes, np.asarray(read_labels(ground_truth)))


def iter_compare(
    weights: dict[str, Path],
    images: Sequence[EvalImage | Callable[[], EvalImage]],
    device: str = "auto",
    *,
    keep_predictions: bool = True,
    diameter: float | str | None = None,
    invert: bool = False,
) -> Generator[Progress, None, Comparison]:
    """Segment every image with every model and score each against the ground truth.

    Parameters
    ----------
    weights : dict
        Model title -> weight file.
    images : sequence
        The images with their ground truth, or loaders of them (called once each, in turn).
    device : str
        Where to run the models.
    keep_predictions : bool
        Keep every :class:`~napari_cellseg.inference.planes.Prediction` in the result (to show
        them as layers); a folder comparison keeps only the metrics.
    diameter : float, str or None
        The object diameter of every run (``PredictParams.diameter``; ``None``: each model's
        default).

    Yields
    ------
    Progress
        Overall progress (``done`` of ``total`` thousandths), at every tile of every
        prediction: the worker can stop there.

    Returns
    -------
    Comparison
    """
    from napari_cellseg._napari._segment_jobs import predict_job
    from napari_cellseg.inference import in_blocks
    from napari_cellseg.models import load_weights

    result = Comparison()
    per_image: dict[str, list[dict[str, float]]] = {title: [] for title in weights}
    models = {}
    for title, path in weights.items():
        yield Progress("compare", 0, _SCALE, f"loading {Path(path).name}…")
        models[title] = load_weights(path)
    runs, done = len(images) * len(weights), 0
    for i, item in enumerate(images, start=1):
        image = item() if callable(item) else item
        for title, model in models.items():
            message = f"{title}: segmenting {image.name} ({i}/{len(images)})…"
            # the model's thresholds; the Segment tab's diameter
            params = PredictParams(
                axes=image.axes, device=device, diameter=diameter, invert=invert,
                channels=image.channels(model.card),  # the layer's choice, for this model
            )  # fmt: skip
            # the Segment tab's job: one core left to the viewer, a large plane in blocks
            job = predict_job(image.data, model, params)
            unit = "blocks" if in_blocks(image.data.shape, image.axes) else "tiles"

            def overall(event: Any, unit: str = unit, done: int = done, message: str = message):
                if isinstance(event, Progress) and event.stage == unit:
                    return Progress(
                        "compare", int(_SCALE * (done + event.fraction) / runs), _SCALE, message
                    )
                return None

            prediction = yield from relay(job, overall)
            done += 1
            yield Progress("compare", int(_SCALE * done / runs), _SCALE, message)
            per_image[title].append(evaluate_labels(image.ground_truth, prediction.labels))
            if keep_predictions:
                result.predictions.setdefault(title, []).append(prediction)
    result.metrics = {title: summarise(scores) for title, scores in per_image.items()}
    return result


_SCALE = 1000  # progress of a comparison, in thousandths


@dataclass(frozen=True)
class Tuned:
    """What tuning found, with the loaded model a tuned copy is saved from."""

    result: Any  # napari_cellseg.training.tuning.TuningResult
    model: Any  # napari_cellseg.models.weights.LoadedModel
    weights: Path

    def summary(self) -> tuple[dict[str, dict[str, Any]], str]:
        """The table's columns (*A as it is*, *A tuned*) and a one-line verdict."""
        result = self.result
        n = {"n_images": result.n_images}
        columns = {
            "A as it is": {"dsb_ap": result.base_score, **n},
            "A tuned": {"dsb_ap": result.score, **n},
        }
        if not result.changed:
            return columns, (
                f"no better setting among {result.n_candidates}: keep the model as it is"
            )
        images = "this image" if result.n_images == 1 else f"these {result.n_images} images"
        verdict = (
            f"{self.weights.name}: best of {result.n_candidates} settings: "
            f"{describe_post(result.changed)} (DSB AP {result.base_score:.3f} → "
            f"{result.score:.3f} on {images}; judge it on others)"
        )
        return columns, verdict


def iter_tune(
    weights: Path,
    images: Sequence[EvalImage | Callable[[], EvalImage]],
    device: str,
    diameter: float | str | None = None,
    invert: bool = False,
) -> Generator[Progress, None, Tuned]:
    """Choose ``weights``' thresholds on labelled ``images`` (``cellseg tune`` in a worker).

    Images given as loaders are read one at a time. Torch leaves one core to the viewer.
    Overall progress (thousandths) comes at every tile; the worker can stop there.
    """
    from napari_cellseg._napari._threads import gui_torch_threads
    from napari_cellseg.device import resolve_device
    from napari_cellseg.models import load_weights
    from napari_cellseg.training.tuning import iter_tune_postprocess
    from napari_cellseg.training.validation import ValidationImage

    yield Progress("tuning", 0, _SCALE, f"loading {weights.name}…")
    model = load_weights(weights, device=resolve_device(device))
    n = len(images)

    def read(item: EvalImage | Callable[[], EvalImage]) -> ValidationImage:
        image = item() if callable(item) else item
        return ValidationImage(image.name, image.data, image.axes, image.ground_truth)

    layer = images[0] if len(images) == 1 and isinstance(images[0], EvalImage) else None
    channels = layer.channels(model.card) if layer is not None else None  # its choice
    params = PredictParams(device=device, diameter=diameter, channels=channels, invert=invert)
    done, message = 0, f"tuning {weights.name}: segmenting image 1 of {n}…"
    with gui_torch_threads():

        def overall(event: Progress) -> Progress:
            nonlocal done, message
            if event.stage == "tuning":  # an image was scored with every setting
                done = event.done
                message = f"tuning {weights.name}: segmenting image {done + 1} of {n}…"
                return Progress("tuning", _SCALE * done // n, _SCALE, event.message)
            # a tile of image done + 1
            return Progress("tuning", int(_SCALE * (done + event.fraction) / n), _SCALE, message)

        gen = iter_tune_postprocess([partial(read, item) for item in images], model, params=params)
        return Tuned((yield from relay(gen, overall)), model, weights)


def save_tuned_copy(tuned: Tuned, data: str, elsewhere: Path) -> Path:
    """Write ``<stem>-tuned.safetensors`` (``-tuned-2``… if taken) beside the weights.

    A demo model's copy goes to ``elsewhere``, never into the installed package. An
    existing file is never overwritten; the original weights are not touched.
    """
    from napari_cellseg.training.tuning import tuned_copy_path, write_tuned

    out = tuned_copy_path(tuned.weights, elsewhere)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_tuned(tuned.model, tuned.result, data, out, like=tuned.weights)
