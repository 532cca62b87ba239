"""Resumable training checkpoints, written atomically and read with ``weights_only=True``.

A checkpoint holds the model, optimiser, scheduler and grad-scaler states, the epoch, the
training parameters and model card, the data folders, the history and the RNG states —
everything :func:`napari_cellseg.training.loop.iter_train` needs to continue exactly.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import CellsegError, first_line
from napari_cellseg.io.atomic import atomic_write_bytes

CHECKPOINT_FORMAT = "napari-cellseg-checkpoint"
CHECKPOINT_VERSION = 1


def checkpoint_path_for(weights_path: str | Path) -> Path:
    """The checkpoint that goes with a weight file: ``model.safetensors`` → ``model.ckpt``."""
    path = Path(weights_path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".ckpt")


def rng_state() -> dict[str, Any]:
    """The RNG states of torch (CPU and CUDA) and Python's ``random``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safely, ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CellsegError(f"{path}: checkpoint not found; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # carries code: refused unexecuted (never advise otherwise)
        raise CellsegError(
            f"{path}: refused: the file is a pickle that carries code, which could run "
            "arbitrary commands; napari-cellseg reads only checkpoints of plain tensors. "
            "Resume from the .ckpt file that `cellseg train` wrote next to the weight file"
        ) from None
    except Exception as error:  # truncated or corrupt
        raise CellsegError(
            f"{path}: not a readable napari-cellseg checkpoint ({first_line(error)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CellsegError(
            f"{path}: not a napari-cellseg checkpoint; resume from the .ckpt file written next "
            "to the weight file"
        )
    return payload


def restore_training_state(
    resume: str | Path,
    out: str | Path,
    state: dict[str, Any],
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
) -> None:
    """Put a checkpoint's training state back, or say in one line why it does not fit."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (KeyError, RuntimeError, ValueError) as error:
        first = first_line(error)[:160]
        raise CellsegError(
            f"{resume}: its training state does not fit the model it describes ({first}); "
            "it was written by another version of napari-cellseg or edited: train again "
            f"without --resume (or with --init {Path(out).name} to start from the weights "
            "saved so far)"
        ) from None
