"""A stack's planes post-processed in worker threads while the network runs the next plane:
the same labels, tables and maps as plane after plane; stopping and errors behave."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.events import CancelledError, Progress, drain
from napari_cellseg.inference import plane_overlap, planes
from napari_cellseg.inference.plane_overlap import PlaneOverlap, post_threads
from napari_cellseg.params import PredictParams

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def stack(sample_planes) -> np.ndarray:
    """Four different real planes (the fluorescence sample, turned and flipped), T Y X."""
    return sample_planes[:4]


def _run(stack, model, threads, monkeypatch, **kw):
    monkeypatch.setattr(plane_overlap, "POST_THREADS", threads)
    params = PredictParams(axes="TYX", diameter="off", keep_probabilities=True, **kw)
    events: list = []
    prediction = drain(planes.iter_predict_planes(stack, model, params), events.append)
    done = [e.done for e in events if isinstance(e, Progress) and e.stage == "planes"]
    return prediction, done


@pytest.mark.parametrize("threads", [1, 3])
def test_overlapped_planes_give_the_plane_by_plane_result(
    stack, demo_unet, monkeypatch, threads
) -> None:
    alone, done_alone = _run(stack, demo_unet, 0, monkeypatch)
    overlapped, done = _run(stack, demo_unet, threads, monkeypatch)
    assert alone.labels.max() > 10
    np.testing.assert_array_equal(overlapped.labels, alone.labels)
    np.testing.assert_array_equal(overlapped.probabilities, alone.probabilities)
    assert alone.table.keys() == overlapped.table.keys()
    for key in alone.table:
        np.testing.assert_array_equal(overlapped.table[key], alone.table[key])
    assert done == done_alone == [1, 2, 3, 4]  # planes reported in order, each once
    assert overlapped.timings["postprocess"] > 0


def test_a_rescaled_stack_is_the_same_overlapped(stack, demo_unet, monkeypatch) -> None:
    def run(threads):
        monkeypatch.setattr(plane_overlap, "POST_THREADS", threads)
        params = PredictParams(axes="TYX", diameter="off")
        return planes.predict_planes(stack, demo_unet, params, scale=1.3)

    np.testing.assert_array_equal(run(2).labels, run(0).labels)


def test_stopping_an_overlapped_stack_stops_and_leaves_no_worker(
    stack, demo_unet, monkeypatch
) -> None:
    monkeypatch.setattr(plane_overlap, "POST_THREADS", 2)
    seen: list = []
    params = PredictParams(axes="TYX", diameter="off")
    gen = planes.iter_predict_planes(stack, demo_unet, params, should_stop=lambda: len(seen) >= 1)
    with pytest.raises(CancelledError):
        for event in gen:
            if isinstance(event, Progress) and event.stage == "tiles":
                seen.append(event)
    for thread in threading.enumerate():
        if thread.name.startswith("cellseg-post"):
            thread.join(timeout=10)
            assert not thread.is_alive()


def test_an_error_in_a_worker_reaches_the_caller(stack, demo_unet, monkeypatch) -> None:
    monkeypatch.setattr(plane_overlap, "POST_THREADS", 2)

    def broken(*args, **kwargs):
        raise ValueError("post-processing broke")

    monkeypatch.setattr(planes, "_post_plane", broken)
    with pytest.raises(ValueError, match="post-processing broke"):
        planes.predict_planes(stack, demo_unet, PredictParams(axes="TYX", diameter="off"))


def test_the_pool_holds_no_more_planes_than_its_threads() -> None:
    gate = threading.Event()
    with PlaneOverlap(1) as overlap:
        overlap.submit(0, gate.wait)
        assert list(overlap.finished()) == []  # running, one waiting is allowed
        overlap.submit(1, lambda: "second")
        gate.set()  # two waiting: the oldest is waited for
        first = list(overlap.finished())
        assert [number for number, _, _ in first][:1] == [0]
        rest = list(overlap.finished(wait=True))
        assert [n for n, _, _ in first + rest] == [0, 1]


def test_threads_only_for_stacks_on_cuda_unless_set(monkeypatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert post_threads(cpu, 10, cores=16) == 0  # the network uses every core
    assert post_threads(cuda, 1, cores=16) == 0
    assert post_threads(cuda, 3, cores=16) == 2
    assert post_threads(cuda, 10, cores=2) == 1
    monkeypatch.setattr(plane_overlap, "POST_THREADS", 2)
    assert post_threads(cpu, 10) == 2 and post_threads(cpu, 1) == 0
