"""The Evaluate dock's work, run in napari workers: metrics of label pairs, model comparisons.

No Qt and no napari here: plain functions and generators over arrays and files.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.core.config import PredictParams
from napari_cellseg.core.errors import CellsegError
from napari_cellseg.core.io import LABEL_SUFFIXES, SUPPORTED_IMAGE_SUFFIXES
from napari_cellseg.core.metrics import evaluate_pair, summarise


@dataclass(frozen=True)
class EvalImage:
    """One image to segment and its ground truth."""

    name: str
    data: Any
    axes: str | None
    ground_truth: np.ndarray


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


def evaluate_folders(predictions: Path, ground_truth: Path) -> dict[str, float]:
    """Mean metrics over the label images of two folders, matched by name."""
    from napari_cellseg.core.io import read_labels

    results = [
        evaluate_labels(read_labels(gt), read_labels(pred))
        for _, pred, gt in matched(predictions, ground_truth, (LABEL_SUFFIXES, LABEL_SUFFIXES))
    ]
    return summarise(results)


def folder_images(images: Path, ground_truth: Path) -> list[EvalImage]:
    """The images of a folder with their ground truth from another, matched by name."""
    from napari_cellseg.core.io import read_image, read_labels

    out = []
    for stem, image, gt in matched(
        images, ground_truth, (SUPPORTED_IMAGE_SUFFIXES, LABEL_SUFFIXES)
    ):
        data = read_image(image)
        out.append(EvalImage(stem, data.data, data.axes, np.asarray(read_labels(gt))))
    return out


def iter_compare(
    weights: dict[str, Path], images: Sequence[EvalImage], device: str = "auto"
) -> Generator[str, None, Comparison]:
    """Segment every image with every model and score each against the ground truth.

    Yields a progress message before each prediction (the worker can stop there) and
    returns a :class:`Comparison`.
    """
    from napari_cellseg.core.inference import predict
    from napari_cellseg.models import load_weights

    result = Comparison()
    for title, path in weights.items():
        yield f"loading {Path(path).name}…"
        model = load_weights(path)
        per_image, preds = [], []
        for i, image in enumerate(images, start=1):
            yield f"{title}: segmenting {image.name} ({i}/{len(images)})…"
            prediction = predict(image.data, model, PredictParams(axes=image.axes, device=device))
            preds.append(prediction)
            per_image.append(evaluate_labels(image.ground_truth, prediction.labels))
        result.metrics[title] = summarise(per_image)
        result.predictions[title] = preds
    return result
