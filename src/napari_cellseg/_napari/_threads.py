"""Leave a CPU core to the GUI while a worker runs torch.

With every core busy in torch, each redraw of the viewer (slow with software OpenGL) waits
for CPU time and the event loop stalls for hundreds of milliseconds
(``bench/gui_responsiveness.py`` measured it). Workers started by the widgets therefore run
torch with one thread fewer than the machine has, and restore the setting afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from typing import Any


@contextlib.contextmanager
def gui_torch_threads() -> Iterator[int]:
    """Run torch with ``cpu_count - 1`` threads (at least 1) inside the block."""
    import torch

    wanted = max(1, (os.cpu_count() or 1) - 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, wanted))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def with_gui_threads(job: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive the generator ``job`` with :func:`gui_torch_threads` around it."""
    with gui_torch_threads():
        return (yield from job)
