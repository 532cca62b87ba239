"""Copies between the host and a GPU that do not stop the host: pinned memory, maps fetched later.

A plain ``tensor.to("cuda")`` from ordinary (pageable) host memory copies through a staging
buffer and returns only when the copy is done; ``tensor.cpu()`` waits for every kernel
queued before it and then for the copy. Each time the host waits, the GPU runs dry until
the host has prepared and sent the next work. Here:

- :func:`to_device` sends an array from page-locked (pinned) memory with
  ``non_blocking=True``: the copy is queued on the device's stream and the host goes on at
  once. PyTorch's caching host allocator keeps each pinned block until the copies queued
  from it are done, and reuses it afterwards (no new page-locking per tile).
- :class:`HostMap` starts a result's copy into pinned host memory, queued after the work
  that makes it, and records a CUDA event; :meth:`HostMap.array` waits for that event
  only when the map is needed. A stack's plane is post-processed in a worker thread
  (:mod:`.plane_overlap`), so the host waits there, while the main thread prepares the
  next plane and queues its tiles behind the current one: two planes in flight, the GPU
  kept busy (the two-deep pipeline, :func:`fetched`).

On the CPU (and MPS) both are the plain copies they replace: the same tensors, the same
arrays, so the CPU tests run this module's code with real data
(``tests/inference/test_transfer.py``); ``tests/gpu/test_cuda.py`` runs it on CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["FETCH_LATER", "PINNED", "HostMap", "fetched", "pinned", "to_device"]

#: Page-locked host memory and copies that do not block the host on CUDA; False: the plain
#: blocking copies (to compare, or where pinning fails).
PINNED = True
#: A stack's planes blended on the device come back as :class:`HostMap` copies waited for
#: in their post-processing threads (where there are any); False: each plane's map is
#: copied back before the next plane starts.
FETCH_LATER = True


def pinned(device: torch.device) -> bool:
    """Whether copies to and from ``device`` go through pinned host memory (CUDA only).

    >>> pinned(torch.device("cpu")), pinned(torch.device("cuda"))
    (False, True)
    """
    return PINNED and device.type == "cuda"


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; on CUDA sent from pinned memory without waiting.

    On the CPU the tensor shares the array's memory (a contiguous copy only if it is not
    contiguous), as ``torch.from_numpy`` does.

    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> t = to_device(a, torch.device("cpu"))
    >>> t.tolist(), np.shares_memory(a, t.numpy())
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], True)
    """
    tensor = (
        array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    )
    if pinned(device) and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()  # from the caching host allocator, kept until copied
    return tensor.to(device, non_blocking=pinned(device))  # itself where it already is


class HostMap:
    """A device tensor's copy to the host, queued now and waited for in :meth:`array`.

    On CUDA (:func:`pinned`) the copy goes into pinned host memory after the work already
    queued on the current stream, and an event marks its end; elsewhere it is the plain
    ``tensor.cpu()``, done at once (on the CPU: the tensor's own memory).

    >>> m = HostMap(torch.ones(2, 2))
    >>> m.shape, m.array().sum()
    ((2, 2), np.float32(4.0))
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self.shape = tuple(tensor.shape)
        self._event: Any = None
        if pinned(tensor.device):
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = tensor.detach().cpu()

    def array(self) -> np.ndarray:
        """The map on the host (waits for its copy, the first time, on CUDA)."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host.numpy()


def fetched(output: Any) -> Any:
    """A plane's raw output on the host: a :class:`HostMap` waited for, anything else as it is.

    >>> fetched(HostMap(torch.zeros(1, 2))).tolist(), fetched("labels")
    ([[0.0, 0.0]], 'labels')
    """
    return output.array() if isinstance(output, HostMap) else output
