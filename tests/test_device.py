from __future__ import annotations

import pytest
import torch

from napari_cellseg.device import available_devices, resolve_device
from napari_cellseg.errors import CellsegError


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (True, True, "cuda"),
        (True, False, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected) -> None:
    from napari_cellseg import device as device_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(device_module, "_mps_available", lambda: mps)
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_resolves_here_to_a_device_that_exists() -> None:
    assert resolve_device("auto").type in {d.split(":")[0] for d in available_devices()}


def test_unavailable_or_unknown_devices_are_clear(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CellsegError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(CellsegError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert "cuda" not in available_devices()
