"""Fixtures of the batch tests (helpers live in batch_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_helpers import save_tiny_unet


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random U-Net weight file shared by the batch tests."""
    return save_tiny_unet(tmp_path_factory.mktemp("batch_weights") / "tiny_unet.safetensors")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine, OpenMP threads spinning against the
    reader/writer threads (and other jobs) make tiny CPU models 10-20x slower.

    Per test, and restored after each, so tests outside ``tests/batch`` keep the default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
