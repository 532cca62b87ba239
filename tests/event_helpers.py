"""Driving generators that yield events and return a result (the core's long jobs)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any


def drain(gen: Generator[Any, None, Any]) -> tuple[Any, list[Any]]:
    """Run ``gen`` to its end: ``(its return value, the events it yielded)``."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events
