"""The fine-tune dock's form fields (defaults from ``TrainParams``) and its result verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, SpinBox, Widget
from napari.utils.notifications import show_error

from napari_cellseg import models
from napari_cellseg._napari._common import SyncGuard
from napari_cellseg.device import available_devices
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import TrainingFinished
from napari_cellseg.labels.metrics import METRIC_KEYS
from napari_cellseg.params import TrainParams, field_info, fine_tune_learning_rate
from napari_cellseg.training.checkpoints import checkpoint_path_for
from napari_cellseg.training.recipes import RECIPES, recipe_params, recipe_values

KEY_METRIC = "dsb_ap"
BASE_COLUMN, NEW_COLUMN = "base", "new"
DEFAULT_MINUTES = 5.0


def default_output(training_set: Path | None, now: dt.datetime | None = None) -> Path | None:
    """``<training set>/models/finetuned-<timestamp>.safetensors`` (a free name)."""
    if training_set is None:
        return None
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder = Path(training_set) / "models"
    path = folder / f"finetuned-{stamp}.safetensors"
    n = 2
    while path.exists() or checkpoint_path_for(path).exists():
        path = folder / f"finetuned-{stamp}-{n}.safetensors"
        n += 1
    return path


def parameter_fields(defaults: TrainParams | None = None, recipe: str = "fast") -> list[Widget]:
    """Widgets for the training parameters, named like the ``TrainParams`` fields.

    The numbers start at ``recipe``'s for a U-Net (:func:`apply_recipe` changes them); the
    fast recipe stops after :data:`DEFAULT_MINUTES` minutes.
    """
    d = defaults or TrainParams()
    values = {**d.to_dict(), **recipe_values(recipe, d.family)}
    by_minutes = recipe == "fast"
    return [
        ComboBox(
            name="recipe", label="Recipe", choices=list(RECIPES), value=recipe,
            tooltip=RECIPE_HELP,
        ),
        ComboBox(
            name="stop_by", label="Stop after", choices=["epochs", "minutes"],
            value="minutes" if by_minutes else "epochs",
        ),
        SpinBox(name="epochs", value=d.epochs, max=10_000, **_options("epochs")),
        FloatSpinBox(
            name="minutes", value=d.minutes or DEFAULT_MINUTES, min=0.1, max=10_000.0,
            step=0.5, visible=by_minutes, **_options("minutes"),
        ),
        FloatSpinBox(
            name="learning_rate", value=values["learning_rate"], min=1e-6, max=1.0, step=1e-6,
            **_options("learning_rate"),
        ),
        SpinBox(name="batch_size", value=values["batch_size"], max=256, **_options("batch_size")),
        SpinBox(name="patch_size", value=values["patch_size"], step=32, **_options("patch_size")),
        SpinBox(
            name="samples_per_epoch", value=values["samples_per_epoch"], max=1_000_000,
            **_options("samples_per_epoch"),
        ),
        CheckBox(name="augment", text="Augment (flips, rotations, intensity)", value=d.augment),
        ComboBox(
            name="invert", label="Invert", choices=list(INVERT_CHOICES), value="auto",
            tooltip=INVERT_CHOICE_HELP,
        ),
        FloatSpinBox(
            name="val_fraction", value=d.val_fraction, max=0.9, step=0.05,
            **_options("val_fraction"),
        ),
        ComboBox(
            name="device", choices=available_devices(), value=d.device, **_options("device")
        ),
    ]  # fmt: skip


RECIPE_HELP = (
    "fast: adapts the model to a few corrected images in minutes (BatchNorm statistics "
    "re-estimated on them, small crops on the objects, warm-up, encoder at a lower rate); "
    "classic: a tenth of the learning rate with BatchNorm frozen, for long runs"
)
INVERT_CHOICES = {"auto": None, "on": True, "off": False}  # the Invert box -> TrainParams
INVERT_CHOICE_HELP = (
    "train on the images flipped (1 - x); the new model inverts by itself. auto: on when the "
    "Segment tab's Invert box is, else a fine-tune turns it on when its images are the other "
    "way round for the base model (dark objects for a fluorescence model) and the base "
    "scores no worse on the validation images inverted"
)
RECIPE_FIELDS = ("learning_rate", "batch_size", "patch_size", "samples_per_epoch")


def apply_recipe(widget: Any, recipe: str, family: str) -> None:
    """Set the numbers of :data:`RECIPE_FIELDS` to ``recipe``'s for ``family``."""
    values = {**TrainParams(family=family).to_dict(), **recipe_values(recipe, family)}
    for name in RECIPE_FIELDS:
        getattr(widget, name).value = values[name]


def _options(name: str) -> dict[str, Any]:
    """Label, tooltip and the inclusive bounds of a ``TrainParams`` field (its metadata).

    Where a bound is exclusive (minutes > 0, learning rate > 0) or absent, the widget
    gives its own reachable limit.
    """
    return field_info(TrainParams, name).widget_options()


def params_from(widget: Any, family: str, *, fine_tuning: bool = True) -> TrainParams:
    """``TrainParams`` from the fields of :func:`parameter_fields` (raises CellsegError).

    Fine-tuning uses the chosen recipe's mechanisms (AdaBN, warm-up...) with the numbers the
    fields show; training from scratch takes the numbers alone.
    """
    by_minutes = widget.stop_by.value == "minutes"
    values = dict(
        epochs=int(widget.epochs.value),
        minutes=float(widget.minutes.value) if by_minutes else None,
        batch_size=int(widget.batch_size.value),
        patch_size=int(widget.patch_size.value),
        samples_per_epoch=int(widget.samples_per_epoch.value),
        learning_rate=float(widget.learning_rate.value),
        augment=bool(widget.augment.value),
        val_fraction=float(widget.val_fraction.value),
        device=str(widget.device.value),
        invert=INVERT_CHOICES[str(widget.invert.value)],
    )
    if fine_tuning:
        return recipe_params(str(widget.recipe.value), family, **values)
    return TrainParams(family=family, **values)


class SessionFields:
    """The training-set, base-weights and output fields, kept in step with the session.

    The training set follows ``session.training_set``; the base weights follow
    ``session.weights`` until the user picks a file; the output is
    ``<training set>/models/finetuned-<timestamp>.safetensors`` until the user picks one.
    """

    def __init__(
        self,
        session: Any,
        training_set: FileEdit,
        base: FileEdit,
        output: FileEdit,
        learning_rate: FloatSpinBox,
        *,
        on_change: Callable[[], None],
        is_running: Callable[[], bool],
        on_family: Callable[[str], None] | None = None,
    ) -> None:
        self.training_set, self.base, self.output = training_set, base, output
        self.learning_rate = learning_rate
        self.family = "unet"
        self.base_follows_session = True
        self.output_is_default = True
        self._on_change, self._is_running = on_change, is_running
        self._on_family = on_family
        self._syncing = SyncGuard()
        training_set.changed.connect(self._on_training_set_field)
        base.changed.connect(self._on_base_field)
        output.changed.connect(self._on_output_field)
        session.training_set_changed.connect(self.follow_training_set)
        session.weights_changed.connect(self.follow_weights)
        self.follow_training_set(session.training_set)
        self.follow_weights(session.weights)

    def follow_training_set(self, folder: Path | None) -> None:
        if folder is not None:
            with self._syncing:
                self.training_set.value = folder
            self._on_training_set_field(folder)

    def follow_weights(self, path: Path | None) -> None:
        if self.base_follows_session and path is not None:
            with self._syncing:
                self.base.value = path
            self._try_read_family(path)

    def _on_training_set_field(self, folder: Path | None) -> None:
        if self.output_is_default and not self._is_running():
            with self._syncing:
                self.output.value = default_output(folder)
        self._on_change()

    def _on_base_field(self, path: Path | None) -> None:
        if not self._syncing.active:
            self.base_follows_session = False
            self._try_read_family(path)

    def _on_output_field(self, _path: Path | None) -> None:
        if not self._syncing.active:
            self.output_is_default = False
        self._on_change()

    def _try_read_family(self, path: Path | None) -> None:
        try:
            self.read_family(path)
        except CellsegError as exc:
            show_error(str(exc))

    def read_family(self, path: Path | None) -> str:
        """The model family of ``path`` (the recipe's numbers follow a family change)."""
        if path is None or not Path(path).is_file():
            return self.family
        family = models.read_card(path).family
        if family != self.family:
            self.family = family
            if self._on_family is not None:
                self._on_family(family)
            else:
                self.learning_rate.value = fine_tune_learning_rate(family)
        return family

    def checked_paths(self) -> tuple[Path, Path | None, Path]:
        """Training set, base weights and a free output file, or a CellsegError."""
        folder = self.training_set.value
        if folder is None or not Path(folder).is_dir():
            raise CellsegError("choose a training-set folder (with images/ and masks/) first")
        base = self.base.value
        if base is not None and not Path(base).is_file():
            raise CellsegError(f"{base}: base weight file not found; pick another one")
        out = self.output.value
        taken = out is not None and (Path(out).exists() or checkpoint_path_for(out).exists())
        if out is None or (self.output_is_default and taken):
            with self._syncing:
                out = self.output.value = default_output(Path(folder))
        out = Path(out)
        if base is not None and out.resolve() == Path(base).resolve():
            raise CellsegError("the output file is the base weight file: choose another name")
        return Path(folder), (Path(base) if base is not None else None), out


@dataclass(frozen=True)
class Outcome:
    """How the new model compares with the base model on the same validation images."""

    columns: dict[str, dict[str, Any]]
    new_metrics: dict[str, Any]
    base_metrics: dict[str, Any] | None
    worse: bool
    verdict: str


def _metric(metrics: dict[str, Any] | None) -> float | None:
    if not metrics or metrics.get(KEY_METRIC) is None:
        return None
    return float(metrics[KEY_METRIC])


def outcome_of(finished: TrainingFinished, baseline: dict[str, Any] | None) -> Outcome:
    """Table columns and verdict for a finished run.

    When no epoch beat the base model (``finished.kept_base``) the weight file holds the
    base weights, so its metrics are the base model's. A run that reports no best epoch
    without that (an older run) holds the last epoch's weights: the last history record's.
    """
    base = finished.baseline_metrics or baseline or None
    if finished.kept_base:
        new = dict(base or {})
        line = finished.kept_base_message()
        columns = {BASE_COLUMN: dict(base)} if base else {}
        columns[NEW_COLUMN] = new
        return Outcome(columns, new, base, False, line[0].upper() + line[1:] + ".")
    if finished.best_epoch > 0 and finished.best_metrics:
        new = dict(finished.best_metrics)
        which = f"The new model is epoch {finished.best_epoch} (the best)."
    else:
        last = next((h for h in reversed(finished.history) if h.get("epoch", 0) > 0), {})
        keys = (*METRIC_KEYS, "n_images")
        new = {k: last[k] for k in keys if k in last}
        which = (
            f"No epoch beat the base model; the file holds the last epoch "
            f"({last.get('epoch', finished.epochs_run)})."
        )
    columns: dict[str, dict[str, Any]] = {}
    if base:
        columns[BASE_COLUMN] = dict(base)
    columns[NEW_COLUMN] = new
    b, n = _metric(base), _metric(new)
    worse = b is not None and n is not None and n < b
    if n is None:
        verdict = "No validation images, so the new model could not be scored."
    elif b is None:
        verdict = f"New model: {KEY_METRIC} {n:.3f} on the validation images."
    elif worse:
        verdict = (
            f"⚠ The new model scores LOWER than the base model ({KEY_METRIC} {n:.3f} < "
            f"{b:.3f}) on the same validation images. Keep the base model unless you "
            "know why."
        )
    elif n == b:
        verdict = f"No improvement: {KEY_METRIC} {n:.3f}, the same as the base model."
    else:
        verdict = f"✓ Better than the base model: {KEY_METRIC} {n:.3f} > {b:.3f}."
    return Outcome(columns, new, base, worse, f"{verdict} {which}")
