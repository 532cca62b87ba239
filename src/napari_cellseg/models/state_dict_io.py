"""Reading tensors out of weight files safely: safetensors, torch files, smp folders.

Torch files are always opened with ``torch.load(weights_only=True)``: a pickle that would
import or call anything other than tensors and plain containers is refused *before* any of
its code runs. Every failure is a :class:`WeightFileError` naming the file and the problem.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import WeightFileError, first_line

StateDict = dict[str, torch.Tensor]

SMP_CONFIG = "config.json"
_SMP_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pth")
# Keys under which training scripts commonly nest the model's state dict.
_WRAPPER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "model_state",
    "ema_state_dict",
)
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
_SUPPORTED = (
    "expected a .safetensors file, a PyTorch .pt/.pth state dict or checkpoint, or a folder "
    "written by segmentation-models-pytorch's save_pretrained"
)


def read_state_dict(path: str | Path) -> tuple[StateDict, dict[str, Any], str]:
    """Read the tensors of a weight file or smp folder.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file, a torch ``.pt``/``.pth``/``.bin`` file (state dict or a
        checkpoint dict wrapping one), or an smp ``save_pretrained`` folder.

    Returns
    -------
    state : dict of str to Tensor
        The state dict, with wrapper prefixes such as ``module.`` removed.
    metadata : dict
        The safetensors metadata (``{}`` when none) plus ``"smp_config"`` for smp folders.
    source : str
        ``"safetensors"``, ``"torch"`` or ``"smp-folder"``.

    Raises
    ------
    WeightFileError
        Missing, unreadable, truncated, not a weight file, or a pickle carrying code.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileError(path, "file not found; check the path")
    if path.is_dir():
        return _read_smp_folder(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as error:
        raise WeightFileError(path, f"cannot be read ({error.strerror})") from None
    if size == 0:
        raise WeightFileError(path, f"empty file (0 bytes); {_SUPPORTED}")
    if _looks_like_safetensors(head) or path.suffix == ".safetensors":
        return _read_safetensors(path, size, head), _safetensors_metadata(path), "safetensors"
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
        return _read_torch(path, head), {}, "torch"
    raise WeightFileError(path, f"not a weight file ({_describe_start(head)}); {_SUPPORTED}")


def safetensors_header(path: Path) -> dict[str, Any]:
    """Parse and validate a safetensors header without reading the tensors."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise WeightFileError(path, f"not a weight file (only {size} bytes); {_SUPPORTED}")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                if header_len > 100_000_000:
                    raise WeightFileError(path, f"not a safetensors file; {_SUPPORTED}")
                raise WeightFileError(
                    path,
                    f"truncated: its header needs {header_len} bytes but the file has only "
                    f"{size} bytes; copy the file again",
                )
            raw = fh.read(header_len)
    except OSError as error:
        raise WeightFileError(path, f"cannot be read ({error.strerror})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightFileError(
            path, f"not a safetensors file (unreadable header); {_SUPPORTED}"
        ) from None
    if not isinstance(header, dict):
        raise WeightFileError(path, f"not a safetensors file; {_SUPPORTED}")
    data_end = max(
        (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
        default=0,
    )
    if 8 + header_len + data_end > size:
        raise WeightFileError(
            path,
            f"truncated: it should hold {8 + header_len + data_end} bytes but has {size}; "
            "copy the file again",
        )
    return header


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000


def _safetensors_metadata(path: Path) -> dict[str, Any]:
    return dict(safetensors_header(path).get("__metadata__") or {})


def _read_safetensors(path: Path, size: int, head: bytes) -> StateDict:
    from safetensors.torch import load_file

    safetensors_header(path)  # validates size, header and offsets first
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError
        raise WeightFileError(path, f"corrupt safetensors file ({error})") from None
    return _strip_prefixes(state)


def _read_torch(path: Path, head: bytes) -> StateDict:
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise WeightFileError(
            path, "truncated or corrupt PyTorch file (its zip directory is missing); copy it again"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        match = re.search(r"GLOBAL\s+([\w.]+)", text) or re.search(r"global:\s*([\w.]+)", text)
        what = f" ({match.group(1)})" if match else ""
        if "weights_only" in text.lower() or "unsupported" in text.lower() or match:
            raise WeightFileError(
                path,
                f"refused: the file is a pickle that carries code{what}, which could run "
                "arbitrary commands. napari-cellseg loads only plain tensors "
                "(torch.load weights_only=True). If you trust its author, re-save only the "
                "weights: torch.save(model.state_dict(), 'weights.pth')",
            ) from None
        raise WeightFileError(path, f"corrupt PyTorch file ({text.splitlines()[0]})") from None
    except (EOFError, RuntimeError, ValueError, OSError) as error:
        raise WeightFileError(
            path, f"truncated or corrupt PyTorch file ({first_line(error)}); copy it again"
        ) from None
    return _strip_prefixes(_unwrap(path, obj))


def _unwrap(path: Path, obj: Any, depth: int = 0) -> StateDict:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, dict) and depth < 3:
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(path, obj[key], depth + 1)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if len(tensors) > 10:  # a state dict with a few extra entries
            return tensors
        keys = ", ".join(map(str, list(obj)[:8]))
        raise WeightFileError(
            path,
            f"a dict without model weights (top-level keys: {keys}); save the model's "
            "state_dict() or wrap it under 'state_dict'",
        )
    raise WeightFileError(
        path, f"holds a {type(obj).__name__}, not a state dict of tensors; {_SUPPORTED}"
    )


def _strip_prefixes(state: StateDict) -> StateDict:
    changed = True
    while changed and state:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _read_smp_folder(path: Path) -> tuple[StateDict, dict[str, Any], str]:
    config_path = path / SMP_CONFIG
    if not config_path.is_file():
        raise WeightFileError(path, f"a folder without {SMP_CONFIG}; {_SUPPORTED}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightFileError(config_path, f"unreadable smp config ({error})") from None
    for name in _SMP_WEIGHT_NAMES:
        weights = path / name
        if weights.is_file():
            state, meta, _ = read_state_dict(weights)
            return state, {**meta, "smp_config": config}, "smp-folder"
    raise WeightFileError(
        path, f"smp folder without weights (expected one of {', '.join(_SMP_WEIGHT_NAMES)})"
    )


def _describe_start(head: bytes) -> str:
    signatures = {
        b"\x89PNG": "it is a PNG image",
        b"\xff\xd8\xff": "it is a JPEG image",
        b"II*\x00": "it is a TIFF image",
        b"MM\x00*": "it is a TIFF image",
        b"\x1f\x8b": "it is gzip-compressed",
        b"<": "it looks like HTML/XML text",
        b"{": "it looks like JSON text",
    }
    for magic, text in signatures.items():
        if head.startswith(magic):
            return text
    if all(32 <= b < 127 or b in b"\r\n\t" for b in head):
        return "it is a text file"
    return "unrecognised content"
