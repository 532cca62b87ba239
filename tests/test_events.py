"""The one rule for long work: generators yield events and return a result (drain, relay)."""

from __future__ import annotations

import pytest

from napari_cellseg.events import CancelledError, Notice, Progress, drain, relay


def _work(log: list[str], n: int = 3):
    try:
        for i in range(1, n + 1):
            yield Progress("steps", i, n)
        log.append("finished")
        return "result"
    finally:
        log.append("cleaned up")


def test_drain_passes_every_event_on_and_returns_the_result() -> None:
    log: list[str] = []
    seen: list[Progress] = []
    assert drain(_work(log), seen.append) == "result"
    assert [(e.done, e.total) for e in seen] == [(1, 3), (2, 3), (3, 3)]
    assert log == ["finished", "cleaned up"]


def test_drain_without_a_callback_and_of_a_generator_that_yields_nothing() -> None:
    assert drain(_work([])) == "result"

    def nothing():
        return 7
        yield  # a generator all the same

    assert drain(nothing()) == 7


def test_closing_a_generator_stops_it_at_its_yield_with_its_clean_up() -> None:
    log: list[str] = []
    gen = _work(log)
    assert next(gen).done == 1
    gen.close()
    assert log == ["cleaned up"]  # never finished
    with pytest.raises(StopIteration):
        next(gen)


def test_an_error_in_the_callback_closes_the_generator() -> None:
    log: list[str] = []

    def stop(event: Progress) -> None:
        if event.done == 2:
            raise CancelledError("stopped")

    with pytest.raises(CancelledError):
        drain(_work(log), stop)
    assert log == ["cleaned up"]


def test_relay_converts_drops_and_returns_the_inner_result() -> None:
    def inner():
        yield Progress("tiles", 1, 2)
        yield Notice("dropped")
        yield Progress("tiles", 2, 2)
        return 41

    def named(event):
        if isinstance(event, Progress):
            return Progress("files", event.done, event.total, "a.tif")
        return None

    def outer():
        return (yield from relay(inner(), named)) + 1

    seen: list[Progress] = []
    assert drain(outer(), seen.append) == 42
    assert [(e.stage, e.done, e.message) for e in seen] == [
        ("files", 1, "a.tif"),
        ("files", 2, "a.tif"),
    ]


def test_closing_a_relay_closes_the_inner_generator() -> None:
    log: list[str] = []
    outer = relay(_work(log), lambda e: e)
    next(outer)
    outer.close()
    assert log == ["cleaned up"]
