"""Running generators that yield events and return a result (the core's long jobs)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from napari_cellseg.events import drain


def collect(gen: Generator[Any, None, Any]) -> tuple[Any, list[Any]]:
    """Run ``gen`` to its end: ``(its return value, the events it yielded)``."""
    events: list[Any] = []
    return drain(gen, events.append), events
