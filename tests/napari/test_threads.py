"""Workers leave the CPU to the GUI: fewer torch threads, lower CPU priority (Linux)."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from napari_cellseg._napari import _segment_jobs
from napari_cellseg._napari._threads import (
    BACKGROUND_NICE,
    background_priority,
    gui_torch_threads,
    with_gui_threads,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux nice")
can_raise_priority = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(body):
    """Run ``body`` in a new thread (its priority changes stay there); return its result."""
    out = {}

    def target():
        try:
            out["value"] = body()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@linux_only
def test_the_block_runs_at_background_priority_and_only_its_thread_does():
    main_before = own_nice()

    def body():
        before = own_nice()
        with background_priority() as lowered:
            inside = own_nice()
            main_inside = os.getpriority(os.PRIO_PROCESS, main_id)
        return lowered, before, inside, main_inside, own_nice()

    main_id = threading.get_native_id()
    lowered, before, inside, main_inside, after = in_thread(body)
    assert lowered
    assert inside == max(before, BACKGROUND_NICE)
    assert main_inside == main_before  # the GUI thread keeps its priority
    if can_raise_priority:
        assert after == before


@linux_only
def test_a_thread_already_lower_is_not_raised():
    def body():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        with background_priority():
            return own_nice()

    assert in_thread(body) == 15


@linux_only
def test_closing_a_job_from_another_thread_restores_the_workers_priority_not_the_closers():
    seen, after = [], {}
    started, closed = threading.Event(), threading.Event()

    def job():
        seen.append(own_nice())
        yield 1

    gen = with_gui_threads(job())

    def worker():
        after["before"] = own_nice()
        next(gen)
        started.set()
        closed.wait(10)  # stays alive while another thread closes the job
        after["worker"] = own_nice()

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(10)
    closer_before = own_nice()
    gen.close()  # the job's finally blocks run here, in this thread
    closed.set()
    thread.join()
    assert seen == [max(after["before"], BACKGROUND_NICE)]
    assert own_nice() == closer_before  # the closing thread was not touched
    if can_raise_priority:
        assert after["worker"] == after["before"]


def test_torch_threads_are_restored_after_a_job():
    before = torch.get_num_threads()
    with gui_torch_threads() as threads:
        assert threads == min(before, max(1, (os.cpu_count() or 1) - 1))
    assert torch.get_num_threads() == before


@linux_only
def test_a_segment_job_runs_at_background_priority(monkeypatch):
    seen = []

    def fake_predict(data, weights, params):
        seen.append(own_nice())
        return
        yield

    monkeypatch.setattr(_segment_jobs, "iter_predict", fake_predict)

    def body():
        gen = _segment_jobs.predict_job(None, None, None)
        with pytest.raises(_segment_jobs.JobError, match="without a result"):
            next(gen)

    in_thread(body)
    assert seen and seen[0] >= BACKGROUND_NICE
