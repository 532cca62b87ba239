"""Small typed events yielded by long-running generators, the cancellation error, ``drain``.

The one rule for long work: a generator that **yields only events** (the classes below)
and **returns its result**. It can be stopped at any yield (``gen.close()`` or a
``should_stop`` callback raising :class:`CancelledError`). :func:`drain` runs one to its
end; :func:`relay` passes one's events on, changed, from inside another generator.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


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


Event = Progress | Notice
"""What long inference work yields: progress and notices."""


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
    """Training ended (``iter_train``'s return value); ``weights_path`` holds the best weights."""

    weights_path: str
    checkpoint_path: str
    epochs_run: int
    best_epoch: int
    best_metrics: dict
    baseline_metrics: dict | None
    stopped_reason: str  # "epochs", "time budget", "early stopping"
    history: list
    kept_base: bool = False  # no epoch beat the base model: the file holds its weights
    invert: bool | None = None  # the file's Invert where it differs from the base's card

    def kept_base_message(self) -> str:
        """The one line saying no epoch beat the base model (``""`` when one did).

        When the base and every epoch scored DSB AP 0 on the validation images, the line
        says that those images could not tell the models apart, and what to do.

        >>> blind = [{"epoch": 0, "dsb_ap": 0.0}, {"epoch": 1, "dsb_ap": 0.0}]
        >>> base = {"dsb_ap": 0.0}
        >>> done = TrainingFinished("out.st", "c", 1, 0, {}, base, "epochs", blind, True)
        >>> "could not tell the models apart" in done.kept_base_message()
        True
        >>> done = TrainingFinished("o.st", "c", 1, 0, {}, {}, "epochs", [], True, invert=True)
        >>> line = done.kept_base_message()
        >>> line.startswith("no epoch beat the base model with Invert on;")
        True
        >>> line.endswith("holds the base weights unchanged, with Invert on as the base was scored")
        True
        """
        if not self.kept_base:
            return ""
        ap = (self.baseline_metrics or {}).get("dsb_ap")
        score = f" (DSB AP {ap:.3f})" if ap is not None else ""
        scores = [row.get("dsb_ap") for row in self.history if isinstance(row, dict)]
        blind = bool(scores) and all(value is not None and value <= 0 for value in scores)
        why = (
            ": the validation images could not tell the models apart (DSB AP 0 for the base "
            "and every epoch); validate on an image where the base model finds some objects, "
            "or correct more of it"
            if blind
            else self._lucky_epoch()
        )
        # a card whose Invert differs from the base's: the predictions change, so say it
        way = "" if self.invert is None else f"with Invert {'on' if self.invert else 'off'}"
        head = f"no epoch beat the base model {way}".rstrip()
        tail = f", {way} as the base was scored" if way else ""
        return f"{head}{score}{why}; {self.weights_path} holds the base weights unchanged{tail}"

    def _lucky_epoch(self) -> str:
        """Why an epoch with a higher DSB AP was refused (few validation objects), or ``""``.

        >>> rows = [{"epoch": 0, "dsb_ap": 0.03, "pixel_dice": 0.5},
        ...         {"epoch": 1, "dsb_ap": 0.18, "pixel_dice": 0.3}]
        >>> done = TrainingFinished("o", "c", 1, 0, {}, rows[0], "epochs", rows, True)
        >>> done._lucky_epoch()[:58]
        ': epoch 1 scored a higher DSB AP (0.180) but found less of'
        """
        base = self.baseline_metrics or {}
        if "dsb_ap" not in base or "pixel_dice" not in base:
            return ""
        for row in self.history:
            if not isinstance(row, dict) or not row.get("epoch"):
                continue
            ap, dice = row.get("dsb_ap"), row.get("pixel_dice")
            if ap is None or dice is None:
                continue
            if ap > base["dsb_ap"] and dice < base["pixel_dice"]:
                return (
                    f": epoch {row['epoch']} scored a higher DSB AP ({ap:.3f}) but found less "
                    f"of the foreground (pixel Dice {dice:.3f} against {base['pixel_dice']:.3f}),"
                    " which decides when the validation images hold so few objects"
                )
        return ""


def drain(gen: Generator[Any, Any, R], on_event: Callable[[Any], None] | None = None) -> R:
    """Run a long-work generator to its end and return its return value.

    Parameters
    ----------
    gen : generator
        Yields events and returns a result (e.g. ``iter_predict``, ``iter_train``).
    on_event : callable, optional
        Called with every event, in order (a progress bar, a log, ``list.append``).

    Returns
    -------
    object
        What ``gen`` returned.

    Examples
    --------
    >>> def work():
    ...     yield Progress("steps", 1, 2)
    ...     yield Progress("steps", 2, 2)
    ...     return "done"
    >>> seen = []
    >>> drain(work(), seen.append)
    'done'
    >>> [event.done for event in seen]
    [1, 2]
    """
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if on_event is not None:
                on_event(event)
    finally:
        gen.close()  # an error in on_event: the generator's clean-up runs now


def relay(
    gen: Generator[Any, Any, R], convert: Callable[[Any], Any | None]
) -> Generator[Any, None, R]:
    """Yield ``convert(event)`` for each event of ``gen`` (``None``: dropped); return its result.

    For a generator that passes another one's events on, changed, with ``yield from``:

    >>> def inner():
    ...     yield Progress("tiles", 1, 1)
    ...     yield Notice("ignored")
    ...     return 42
    >>> def outer():
    ...     result = yield from relay(inner(), lambda e: e if isinstance(e, Progress) else None)
    ...     return result + 1
    >>> [e.stage for e in outer()], drain(outer())
    (['tiles'], 43)
    """
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            converted = convert(event)
            if converted is not None:
                yield converted
    finally:
        gen.close()  # closed early (stopped): the inner generator's clean-up runs now
