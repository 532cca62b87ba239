from __future__ import annotations

import pytest
import torch

from napari_cellseg.device import available_devices, resolve_device
from napari_cellseg.errors import CellsegError


def test_auto_resolves_to_an_available_device() -> None:
    device = resolve_device("auto")
    expected = (
        "cuda" if torch.cuda.is_available() else ("mps" if "mps" in available_devices() else "cpu")
    )
    assert device.type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_unavailable_or_unknown_devices_are_clear(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CellsegError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(CellsegError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert "cuda" not in available_devices()
