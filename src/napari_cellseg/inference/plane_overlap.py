"""Post-processing of finished planes in worker threads while the network runs the next one.

A z-stack or time-lapse goes plane by plane: network, then post-processing (watershed,
relabelling), which runs on the CPU. On a GPU the network is the small part (on the lent
H200 a 1024² plane took 0.010 s of network and 0.085 s of post-processing, session 16), so
running them one after the other leaves the GPU idle most of the time. Here a plane's
post-processing is handed to a small thread pool as soon as its network output is there,
and the next plane goes to the network at once; finished planes are collected in order.
NumPy, SciPy and scikit-image release the GIL in their inner loops, so the threads run
side by side with the network and with each other.

The labels are those of the plane-by-plane run (each plane's post-processing is the same
pure function of its network output): ``tests/inference/test_plane_overlap.py``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["POST_THREADS", "PlaneOverlap", "post_threads"]

#: Worker threads for post-processing while the network runs; ``None``: :func:`post_threads`
#: decides (set a number to force it, 0 for plane after plane).
POST_THREADS: int | None = None
#: At most this many threads on a GPU machine (the rest of the cores feed the network).
MAX_GPU_POST_THREADS = 4


def post_threads(device: torch.device, n_planes: int, cores: int | None = None) -> int:
    """How many threads post-process planes while the network runs (0: none, in line).

    One plane: none. On CUDA: up to :data:`MAX_GPU_POST_THREADS`, leaving a core to the
    process that feeds the GPU. On the CPU: none, since the network already uses every core
    (``bench/plane_overlap.py`` measures it).

    >>> post_threads(torch.device("cuda"), 8, cores=16)
    4
    >>> post_threads(torch.device("cuda"), 1, cores=16), post_threads(torch.device("cpu"), 8, 2)
    (0, 0)
    """
    if POST_THREADS is not None:
        return max(0, POST_THREADS) if n_planes > 1 else 0
    if n_planes <= 1 or device.type != "cuda":
        return 0
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, min(MAX_GPU_POST_THREADS, cores - 1, n_planes - 1))


class PlaneOverlap:
    """Runs each plane's post-processing in a worker thread (or in line with 0 threads).

    :meth:`submit` hands a plane over; :meth:`finished` yields the planes done so far, in
    order (all of them with ``wait=True``); no more than ``threads`` planes wait at once,
    so memory holds at most that many network outputs beyond the one being made.
    :meth:`close` drops the planes not started (a stopped run).

    Each result is ``(plane_number, value, seconds)``: what ``work`` returned and how long
    it took in its thread.

    >>> with PlaneOverlap(2) as overlap:
    ...     for n in range(3):
    ...         overlap.submit(n, lambda n=n: n * 10)
    ...     [value for _, value, _ in overlap.finished(wait=True)]
    [0, 10, 20]
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="cellseg-post") if threads else None
        )
        self._pending: deque[tuple[int, Future | tuple[Any, float]]] = deque()

    def __enter__(self) -> PlaneOverlap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, plane_number: int, work: Callable[[], Any]) -> None:
        """Post-process a plane: in a worker thread, or at once without threads."""
        if self._pool is None:
            self._pending.append((plane_number, _timed(work)))
        else:
            self._pending.append((plane_number, self._pool.submit(_timed, work)))

    def finished(self, wait: bool = False) -> Iterator[tuple[int, Any, float]]:
        """The planes done, oldest first; with ``wait`` every plane, else those ready (and
        the oldest ones when more than ``threads`` wait). A plane's error is raised here."""
        while self._pending:
            number, job = self._pending[0]
            if isinstance(job, Future) and not (
                wait or job.done() or len(self._pending) > self.threads
            ):
                return
            self._pending.popleft()
            value, seconds = job.result() if isinstance(job, Future) else job
            yield number, value, seconds

    def close(self) -> None:
        """Cancel the planes not started and let the running ones end (nothing waits)."""
        for _, job in self._pending:
            if isinstance(job, Future):
                job.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = work()
    return value, time.perf_counter() - start
