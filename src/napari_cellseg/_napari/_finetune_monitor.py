"""Turns training events into progress, status text and curves, a few times a second at most.

Events arrive on the GUI thread as fast as the worker yields them (hundreds per second on a
GPU). :meth:`TrainingMonitor.add` only records them (O(1)); a timer pushes the latest state to
the widgets every ``interval_ms``, and an epoch's end is shown at once.
"""

from __future__ import annotations

import time
from typing import Any

from magicgui.widgets import Label, ProgressBar
from qtpy.QtCore import QTimer

from napari_cellseg._napari._curves import CurvePlot, Series
from napari_cellseg.events import EpochEnd, Notice, StepLoss

LOSS_STEPS, LOSS_EPOCH = "loss (steps)", "loss (epoch mean)"
VAL_AP, VAL_F1, BASE_AP = "val dsb_ap", "val f1@0.5", "base model dsb_ap"


def make_curves() -> CurvePlot:
    """The plot of the fine-tune dock: losses on the left axis, scores on the right."""
    return CurvePlot(
        [
            Series(LOSS_STEPS, "#7fa8d9"),
            Series(LOSS_EPOCH, "#1f5fbf", markers=True),
            Series(VAL_AP, "#e07b00", axis="right", markers=True),
            Series(VAL_F1, "#2e9e44", axis="right", markers=True),
            Series(BASE_AP, "#c03030", axis="right", dashed=True, hline=True),
        ],
        left_label="loss",
        right_label="score",
    )


class TrainingMonitor:
    """Records training events and refreshes ``progress``, ``status`` and ``curves``."""

    def __init__(
        self, progress: ProgressBar, status: Label, curves: CurvePlot, interval_ms: int = 250
    ) -> None:
        self.progress, self.status, self.curves = progress, status, curves
        self.updates = 0  # widget refreshes done (tests check the throttle)
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new run)."""
        self.steps: tuple[list[float], list[float]] = ([], [])
        self.epochs: dict[str, tuple[list[float], list[float]]] = {
            LOSS_EPOCH: ([], []),
            VAL_AP: ([], []),
            VAL_F1: ([], []),
        }
        self.baseline: dict[str, Any] | None = None
        self.total_epochs = 0
        self._last_step: StepLoss | None = None
        self._message = ""
        self._started = time.monotonic()
        self._dirty = True
        self.curves.clear()

    def begin(self, total_epochs: int, *, keep: bool = False) -> None:
        """Start refreshing; ``keep`` continues the curves of a stopped run (resume)."""
        if not keep:
            self.reset()
        self.total_epochs = total_epochs or self.total_epochs
        self._started = time.monotonic()
        self._timer.start()

    def end(self) -> None:
        """Stop the timer after one last refresh."""
        self._timer.stop()
        self.flush()

    # -- events -----------------------------------------------------------------------------
    def add(self, event: Any) -> None:
        """Record one event from ``iter_train`` (cheap; the widgets follow on the timer)."""
        if isinstance(event, StepLoss):
            if event.step == 1:
                self._truncate(event.epoch - 1)  # a resumed run redoes this epoch
            x = event.epoch - 1 + event.step / max(1, event.steps_per_epoch)
            self.steps[0].append(x)
            self.steps[1].append(event.loss)
            self._last_step = event
            self._dirty = True
        elif isinstance(event, EpochEnd):
            self.total_epochs = event.epochs
            self._add_epoch(event.epoch, event.train_loss, event.val_metrics)
            self.flush()
        elif isinstance(event, Notice):
            self._message = event.message
            self._dirty = True

    def _add_epoch(self, epoch: int, loss: float | None, metrics: dict[str, Any]) -> None:
        if epoch == 0:
            self.baseline = dict(metrics)
            self._message = f"base model: dsb_ap {metrics.get('dsb_ap', float('nan')):.3f}"
        else:
            self._truncate(epoch - 1, steps=False)
            self._message = f"epoch {epoch}: " + ", ".join(
                f"{k} {metrics[k]:.3f}" for k in ("dsb_ap", "f1@0.5") if k in metrics
            )
        for name, value in ((LOSS_EPOCH, loss), (VAL_AP, metrics.get("dsb_ap"))):
            if value is not None and epoch > 0:
                self.epochs[name][0].append(epoch)
                self.epochs[name][1].append(float(value))
        if "f1@0.5" in metrics and epoch > 0:
            self.epochs[VAL_F1][0].append(epoch)
            self.epochs[VAL_F1][1].append(float(metrics["f1@0.5"]))
        self._dirty = True

    def _truncate(self, after: float, *, steps: bool = True) -> None:
        """Drop points past epoch ``after`` (left over from a stopped run)."""
        series = list(self.epochs.values()) + ([self.steps] if steps else [])
        for xs, ys in series:
            while xs and xs[-1] > after + 1e-9:
                xs.pop()
                ys.pop()

    def load_history(self, history: list[dict[str, Any]], baseline: dict | None) -> None:
        """Redraw the epoch curves from a finished run's full history."""
        for xs, ys in self.epochs.values():
            xs.clear()
            ys.clear()
        if baseline:
            self.baseline = dict(baseline)
        for record in history:
            metrics = {k: v for k, v in record.items() if k not in ("epoch", "train_loss")}
            epoch = int(record.get("epoch", 0))
            if epoch > 0:
                self._add_epoch(epoch, record.get("train_loss"), metrics)
        self._dirty = True
        self.flush()

    # -- refresh ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Push the recorded state to the widgets (only when something changed)."""
        if not self._dirty:
            return
        self._dirty = False
        self.updates += 1
        step = self._last_step
        if step is not None:
            spe = max(1, step.steps_per_epoch)
            total = max(1, self.total_epochs) * spe
            self.progress.max = total
            self.progress.value = min(total, (step.epoch - 1) * spe + step.step)
            elapsed = time.monotonic() - self._started
            text = (
                f"epoch {step.epoch}/{self.total_epochs} · step {step.step}/{spe} · "
                f"loss {step.loss:.4f} · {elapsed:.0f} s"
            )
            self.status.value = text + (f"\n{self._message}" if self._message else "")
        elif self._message:
            self.status.value = self._message
        self.curves.set_series(LOSS_STEPS, *self.steps)
        for name, (xs, ys) in self.epochs.items():
            self.curves.set_series(name, xs, ys)
        base = self.baseline.get("dsb_ap") if self.baseline else None
        self.curves.set_series(BASE_AP, [], [] if base is None else [float(base)])
