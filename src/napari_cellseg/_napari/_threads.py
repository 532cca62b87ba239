"""Leave the CPU to the GUI while a worker runs torch.

With every core busy in torch, each redraw of the viewer (slow with software OpenGL) waits
for CPU time and the event loop stalls for hundreds of milliseconds
(``bench/gui_responsiveness.py`` measured it). Workers started by the widgets therefore

- run torch with one thread fewer than the machine has, and restore the setting afterwards;
- on Linux, run at a lower CPU priority (nice :data:`BACKGROUND_NICE`), so that when the
  GUI thread or the display server wants a core, the scheduler gives it to them first. When
  nothing else wants the CPU the worker runs at full speed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Generator, Iterator
from typing import Any

#: The nice value of a worker thread while it runs a job (0 is normal, 19 the lowest).
BACKGROUND_NICE = 10


@contextlib.contextmanager
def background_priority(nice: int = BACKGROUND_NICE) -> Iterator[bool]:
    """Run the calling thread at CPU priority ``nice`` (at least its own) inside the block.

    Linux only (elsewhere, or when the system refuses, this does nothing and yields
    ``False``). The thread's former priority is restored at the end where the system allows
    it: without ``CAP_SYS_NICE`` a thread cannot raise its priority again, so a pool thread
    stays at ``nice`` until Qt retires it (30 s idle); it only ever runs background jobs.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        yield False
        return
    thread = threading.get_native_id()  # on Linux, PRIO_PROCESS with a thread id: that thread
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, max(before, min(nice, 19)))
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        # the thread id, not the current thread: a generator may be closed from another one
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, before)


@contextlib.contextmanager
def gui_torch_threads() -> Iterator[int]:
    """Run torch with ``cpu_count - 1`` threads (at least 1) at background priority."""
    import torch

    wanted = max(1, (os.cpu_count() or 1) - 1)
    previous = torch.get_num_threads()
    owner = threading.get_ident()
    torch.set_num_threads(min(previous, wanted))
    try:
        with background_priority():
            yield torch.get_num_threads()
    finally:
        # torch's count is per thread under OpenMP: a job closed from another thread (the GUI
        # cancelling it) must not impose the worker's count on the closing thread
        if threading.get_ident() == owner:
            torch.set_num_threads(previous)


def with_gui_threads(job: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive the generator ``job`` with :func:`gui_torch_threads` around it."""
    with gui_torch_threads():
        return (yield from job)
