"""Choosing the compute device: ``auto`` prefers CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from napari_cellseg.errors import CellsegError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Device names usable on this machine, ``"auto"`` first.

    >>> available_devices()[0], "cpu" in available_devices()
    ('auto', True)
    """
    names = ["auto"]
    if torch.cuda.is_available():
        names.append("cuda")
        names.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()) if i > 0)
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a ``torch.device``.

    Parameters
    ----------
    name : str or torch.device
        ``"auto"`` (cuda > mps > cpu), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``.

    Raises
    ------
    CellsegError
        When the named device is not available here (the message lists the ones that are).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CellsegError(
            f"unknown device {name!r}; choose one of {', '.join(available_devices())}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CellsegError(
                "device 'cuda' was asked for but no CUDA GPU is available here; "
                f"use one of {', '.join(available_devices())}"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CellsegError(
                f"device {name!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not _mps_available():
        raise CellsegError(
            "device 'mps' was asked for but Apple MPS is not available here; "
            f"use one of {', '.join(available_devices())}"
        )
    elif device.type not in ("cuda", "mps", "cpu"):
        raise CellsegError(
            f"unsupported device {name!r}; choose one of {', '.join(available_devices())}"
        )
    return device
