"""Small typed events yielded by long-running generators, and the cancellation error."""

from __future__ import annotations

from dataclasses import dataclass


class CancelledError(Exception):
    """Raised when a running job is stopped at one of its yields (nothing half written)."""


@dataclass(frozen=True)
class Progress:
    """Work done so far: ``done`` of ``total`` units of ``stage`` (e.g. tiles, planes)."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Progress as a number in [0, 1]."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class Notice:
    """Something the user should know (a fallback, a default that was applied...)."""

    message: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class StepLoss:
    """One optimisation step finished."""

    epoch: int
    step: int
    steps_per_epoch: int
    loss: float
    learning_rate: float


@dataclass(frozen=True)
class EpochEnd:
    """An epoch finished (epoch 0 = the starting model, evaluated before training).

    ``val_metrics`` holds the metrics module's keys (``dsb_ap``, ``f1@0.5`` ...);
    ``best`` says whether this epoch's weights are now the kept best ones.
    """

    epoch: int
    epochs: int
    train_loss: float | None
    val_metrics: dict
    best: bool
    seconds: float


@dataclass(frozen=True)
class CheckpointSaved:
    """The resumable checkpoint (and, when ``best``, the weight file) was written."""

    path: str
    epoch: int
    weights_path: str | None = None


@dataclass(frozen=True)
class TrainingFinished:
    """Training ended; ``weights_path`` holds the best weights with their model card."""

    weights_path: str
    checkpoint_path: str
    epochs_run: int
    best_epoch: int
    best_metrics: dict
    baseline_metrics: dict | None
    stopped_reason: str  # "epochs", "time budget", "early stopping"
    history: list
