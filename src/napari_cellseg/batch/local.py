"""The in-process batch pipeline (``scheduler="none"``): read ahead, segment, write behind.

A thread pool reads the next ``prefetch`` images while the current one is segmented in the
calling thread, and a writer thread writes labels and measurements from a bounded queue (at
most two results waiting): at most ``prefetch + 1 + 3`` images are in memory at once, and a
group's small images besides. Small images of one size are segmented in groups where the
device passes several tiles at once (:mod:`napari_cellseg.inference.image_groups`: CUDA,
and ONNX Runtime on the CPU for small images), each file written and recorded as alone; a
group that fails is run again file by file, so that each file reports its own error.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from napari_cellseg.batch.file_steps import save_outputs, segment
from napari_cellseg.batch.files import FileTask
from napari_cellseg.batch.jobs import BatchJob, FileResult, failure, file_params
from napari_cellseg.batch.reading import read_input
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress, relay
from napari_cellseg.params import PredictParams

__all__ = ["iter_local"]

_WRITE_QUEUE = 2


class _Writer:
    """A background thread writing outputs from a bounded queue."""

    def __init__(self, job: BatchJob, record: Callable[[FileResult], None]) -> None:
        self._job = job
        self._record = record
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=_WRITE_QUEUE)
        self._results: queue.SimpleQueue[FileResult] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cellseg-batch-writer", daemon=True)
        self._finished = False
        self.error: BaseException | None = None
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so that put() never blocks forever
            task, image, prediction, timings = item
            try:
                result = save_outputs(self._job, task, image, prediction, timings)
                self._record(result)
            except BaseException as error:  # recording failed (e.g. the journal's disk)
                self.error = error
                continue
            self._results.put(result)

    def put(self, task: FileTask, image: Any, prediction: Any, timings: dict) -> None:
        """Queue one file for writing (blocks while the queue is full). The writer needs
        labels and the table only: the network output (float maps) is not kept."""
        self._queue.put((task, image, replace(prediction, raw=[], probabilities=None), timings))

    def ready(self) -> Generator[FileResult, None, None]:
        """The results written since the last call (raises what broke the writer)."""
        if self.error is not None:
            raise self.error
        while True:
            try:
                yield self._results.get_nowait()
            except queue.Empty:
                return

    def finish(self) -> None:
        """Write everything queued, then stop the thread (idempotent)."""
        if not self._finished:
            self._finished = True
            self._queue.put(None)
            self._thread.join()


def _timed_read(task: FileTask, job: BatchJob, axes: str | None) -> tuple[Any, float]:
    t0 = time.perf_counter()
    image = read_input(task.source, memmap_pixels=job.memmap_pixels, axes=axes, slide=job.slide)
    return image, time.perf_counter() - t0


def iter_local(
    job: BatchJob,
    tasks: list[FileTask],
    model: Any,
    record: Callable[[FileResult], None],
    *,
    prefetch: int,
    should_stop: Callable[[], bool],
) -> Generator[Progress | Notice | FileResult, None, None]:
    """Read ahead in threads, segment here (small images of one size in groups), write in
    the background."""
    params = job.predict_params()
    together = _group_size(model, params)
    reader = ThreadPoolExecutor(max_workers=min(2, prefetch), thread_name_prefix="cellseg-read")
    writer = _Writer(job, record)
    pending: deque[tuple[FileTask, Future]] = deque()
    remaining = iter(tasks)

    def fill(ahead: int = prefetch) -> None:
        while len(pending) < ahead and (task := next(remaining, None)) is not None:
            pending.append((task, reader.submit(_timed_read, task, job, params.axes)))

    def one(task: FileTask, image: Any, read_seconds: float) -> Generator[Any, None, None]:
        t1 = time.perf_counter()
        try:
            prediction = yield from _forward(
                segment(image, model, params, should_stop=should_stop, job=job, task=task),
                task.rel,
            )
        except CancelledError:
            raise
        except Exception as error:
            result = failure(task, error, read_seconds + time.perf_counter() - t1)
            record(result)
            yield result
            return
        writer.put(
            task, image, prediction, {"read": read_seconds, "segment": time.perf_counter() - t1}
        )

    def group_of(first: tuple[FileTask, Any, float]) -> list[tuple[FileTask, Any, float]]:
        """``first`` and the images read after it that can go through the network with it."""
        group = [first]
        key = _key(first[1], model, params, job)
        limit = 1 if key is None else _group_size(model, params, key)
        while len(group) < limit:
            fill(max(prefetch, limit - len(group)))  # small images: read as many as go together
            if not pending:
                break
            task, future = pending[0]
            try:
                image, read_seconds = future.result()
            except Exception:  # its own turn reports it
                break
            if _key(image, model, params, job) != key:
                break
            pending.popleft()
            group.append((task, image, read_seconds))
        return group

    def run_group(group: list[tuple[FileTask, Any, float]]) -> Generator[Any, None, bool]:
        """The group through the network together; False when it failed (then one by one,
        so that each file reports its own error)."""
        from napari_cellseg.inference.image_groups import iter_predict_images

        t1 = time.perf_counter()
        first = group[0][1]
        run_params = file_params(params, first)
        name = f"{group[0][0].rel} and {len(group) - 1} more"
        try:
            predictions = yield from _forward(
                iter_predict_images(
                    [image.data for _, image, _ in group],
                    model,
                    run_params,
                    pixel_size_um=first.pixel_size_um,
                    should_stop=should_stop,
                ),
                name,
            )
        except CancelledError:
            raise
        except Exception:
            return False
        seconds = (time.perf_counter() - t1) / len(group)
        for (task, image, read_seconds), prediction in zip(group, predictions, strict=True):
            writer.put(task, image, prediction, {"read": read_seconds, "segment": seconds})
        return True

    try:
        fill()
        while pending:
            yield from writer.ready()
            if should_stop():
                raise CancelledError("batch was stopped")
            task, future = pending.popleft()
            fill()
            t0 = time.perf_counter()
            try:
                image, read_seconds = future.result()
            except Exception as error:
                result = failure(task, error, time.perf_counter() - t0)
                record(result)
                yield result
                continue
            group = group_of((task, image, read_seconds)) if together > 1 else []
            if len(group) > 1 and (yield from run_group(group)):
                continue
            for member in group or [(task, image, read_seconds)]:
                yield from one(*member)
            del image, group
        writer.finish()
        yield from writer.ready()
    except CancelledError:
        writer.finish()  # what was computed is written (atomically) and recorded
        yield from writer.ready()
        raise
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.finish()


def _group_size(model: Any, params: PredictParams, key: tuple | None = None) -> int:
    """Images of ``key`` (of any, without) gathered into one run
    (:func:`.image_groups.images_per_group`)."""
    from napari_cellseg.device import resolve_device
    from napari_cellseg.inference.image_groups import images_per_group

    if model is None:
        return 1
    return images_per_group(resolve_device(params.device), model.card, params, key)


def _key(image: Any, model: Any, params: PredictParams, job: BatchJob) -> tuple | None:
    """The image's :func:`~napari_cellseg.inference.image_groups.group_key` (None: alone)."""
    from napari_cellseg.inference.image_groups import group_key

    run_params = file_params(params, image)
    try:
        return group_key(
            image.data, model.card, run_params, pixel_size_um=image.pixel_size_um,
            blocks=job.blocks,
        )  # fmt: skip
    except CellsegError:  # e.g. a micrometre diameter without a pixel size: its run says so
        return None


def _forward(gen: Generator, name: str) -> Generator[Progress | Notice, None, Any]:
    """Pass segmentation events on, naming the file; return the prediction."""

    def named(event: Any) -> Progress | Notice | None:
        if isinstance(event, Progress) and event.stage in ("tiles", "blocks"):
            return Progress(event.stage, event.done, event.total, name)
        if isinstance(event, Notice):
            return Notice(f"{name}: {event.message}", event.level)
        return None

    return (yield from relay(gen, named))
