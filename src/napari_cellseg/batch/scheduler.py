"""Scale-out with dask.distributed: a LocalCluster of worker processes or an existing scheduler.

Each file is one task, ``process_file(job, task)``: the job spec is small and picklable, the
worker loads the model once per process and writes the outputs itself (atomically), so the
output folder must be reachable from every worker at the same path. At most
``2 x workers`` tasks are in flight (memory stays bounded); results are gathered as they
complete, so progress streams.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

from napari_cellseg.batch.file_steps import process_file
from napari_cellseg.batch.files import FileTask
from napari_cellseg.batch.jobs import BatchJob, FileResult, failure
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice

__all__ = ["check_scheduler", "default_workers", "iter_dask"]

_ADDRESS_PREFIXES = ("tcp://", "tls://")
CONNECT_TIMEOUT = "10s"
"""How long to try reaching an existing scheduler."""


def check_scheduler(scheduler: str, workers: int | None) -> str:
    """Validate the scheduler choice; returns it normalised.

    >>> check_scheduler("LOCAL", 2), check_scheduler("tcp://10.0.0.1:8786", None)
    ('local', 'tcp://10.0.0.1:8786')
    """
    value = str(scheduler).strip()
    if value.lower() in ("none", "local"):
        value = value.lower()
    elif not value.startswith(_ADDRESS_PREFIXES) or len(value) <= 6:
        raise CellsegError(
            f"unknown scheduler {scheduler!r}: use none (in this process), local (worker "
            "processes on this machine) or the address of a dask scheduler, tcp://host:port"
        )
    if workers is not None and not 1 <= int(workers) <= 512:
        raise CellsegError(f"workers must be between 1 and 512, got {workers}")
    return value


def default_workers() -> int:
    """Worker processes of a local cluster when not given: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _connect(scheduler: str, workers: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    try:
        if scheduler == "local":
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            return Client(cluster), cluster
        return Client(scheduler, timeout=CONNECT_TIMEOUT), None
    except Exception as error:
        where = "start a local dask cluster" if scheduler == "local" else f"reach {scheduler}"
        raise CellsegError(f"could not {where}: {error}") from None


def iter_dask(
    job: BatchJob,
    tasks: list[FileTask],
    record: Callable[[FileResult], None],
    *,
    scheduler: str,
    workers: int,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[FileResult | Notice, None, None]:
    """Run `tasks` on dask workers, yielding each result as it completes.

    Every result is passed to `record` before it is yielded. On stop, pending tasks are
    cancelled and :class:`CancelledError` is raised; files being written when the workers
    shut down leave at most a hidden temporary file, removed by the next run.
    """
    from distributed import as_completed

    client, cluster = _connect(scheduler, workers)
    try:
        n_workers = len(client.scheduler_info().get("workers", {})) or workers
        yield Notice(f"dask scheduler {client.scheduler.address} with {n_workers} worker(s)")
        window = max(2, 2 * n_workers)
        remaining: Iterator[FileTask] = iter(tasks)
        by_key: dict[str, FileTask] = {}

        def submit(task: FileTask) -> Any:
            key = f"cellseg-batch-{uuid.uuid4().hex}"
            by_key[key] = task
            return client.submit(process_file, job, task, key=key, pure=False, retries=0)

        first = [submit(t) for _, t in zip(range(window), remaining, strict=False)]
        pending = as_completed(first)
        for future in pending:
            task = by_key.pop(future.key)
            try:
                result = future.result()
            except Exception as error:  # the worker died (out of memory, killed)
                result = failure(
                    task, f"the dask worker processing it failed or died: {error}".strip()
                )
            record(result)
            yield result
            if should_stop is not None and should_stop():
                client.cancel(list(pending.futures))
                raise CancelledError("batch was stopped")
            following = next(remaining, None)
            if following is not None:
                pending.add(submit(following))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
