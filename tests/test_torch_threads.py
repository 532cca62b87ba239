"""Settings a folder's conftest makes for its own tests do not leak into other tests."""

from __future__ import annotations

import os


def test_torch_keeps_its_default_thread_count_outside_the_batch_tests() -> None:
    import torch

    # torch's default: the OMP_NUM_THREADS the run was started with, else the usable cores
    # (recorded by conftest.py before any test ran)
    expected = int(os.environ["CELLSEG_TEST_STARTING_TORCH_THREADS"])
    assert torch.get_num_threads() == expected
