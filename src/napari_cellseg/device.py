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


def channels_last(batch: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """A 4-D batch in channels-last memory where that is the fast layout, else contiguous.

    oneDNN (CPU) and cuDNN (CUDA) run convolutions faster on channels-last inputs; the
    weights can stay as they are (a shared model is not changed). ``device``: where the
    batch runs (default: where it is). Used by inference tiles and U-Net training batches;
    the training gain is measured in ``docs/training.md``.

    >>> channels_last(torch.zeros(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    True
    >>> channels_last(torch.zeros(3, 8, 8)).is_contiguous()
    True
    """
    where = (device or batch.device).type
    if batch.dim() == 4 and where in ("cpu", "cuda"):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch.contiguous()
