"""Shared test setup: nothing may touch the network, and tests use a private TORCH_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NAPARI_CELLSEG_NO_GC_FREEZE", "1")  # napari leak checks need gc
# torch's thread count when the run starts (OMP_NUM_THREADS, else the usable cores), read
# before any library can change the environment (distributed sets OMP_NUM_THREADS=1)
STARTING_TORCH_THREADS = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
os.environ["CELLSEG_TEST_STARTING_TORCH_THREADS"] = str(STARTING_TORCH_THREADS)


@pytest.fixture(autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))
    # ONNX exports of the U-Nets the tests run go to the run's own cache, never the user's
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection outside the loopback fails the test (see ``network_guard.py``)."""
    import socket

    from network_guard import guard

    monkeypatch.setattr(socket.socket, "connect", guard(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(socket.socket.connect_ex))


@pytest.fixture(autouse=True)
def _torch_threads_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test (or the code it runs) must leave torch's thread count as it found it: a
    changed count slows every later test and hides where the change came from."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None:
        after = torch.get_num_threads()
        if after != before:
            torch.set_num_threads(before)
            pytest.fail(f"torch's thread count changed from {before} to {after} in this test")
