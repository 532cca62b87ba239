"""Known exports: a weight file whose ONNX export is cached starts without PyTorch's model.

The CPU's default backend runs a U-Net's cached export (:mod:`.onnx_backend`), but the
export is found by a hash of the *built* model's weights, so every process still built the
PyTorch model first. Building it imports segmentation-models-pytorch, which imports timm and
torchvision, and reads every tensor of the file into a model the process then never runs:
``cellseg predict`` on one sample image took 5.06 s in a new process against 2.85 s without
it, and peaked at 991 against 774 MiB, on this project's 2-core machine
(``bench/cold_start.py``, ``bench/results/cold_start_cpu_s23.json``).

So the first process that exports (or uses) a weight file's export records it under a key
of the file's *bytes* (sha256, with the card's architecture and this module's
:data:`KNOWN_VERSION`), in ``<cache>/onnx/known/<key>.json``, with the checks the export
passed against PyTorch on this CPU and ONNX Runtime version. A later process that loads the
same file on the CPU (:func:`load`) reads only its header and hashes it; when the record
says which export to open and that it passed its check here, the model is *deferred*
(:meth:`~napari_cellseg.models.weights.LoadedModel.deferred`) and :func:`known_session`
opens the export (or its int8 copy, when that passed its own check here) without building
it. Anything else (another file, a changed file, another CPU or ONNX Runtime, an export
pruned from the cache, the PyTorch backend, a GPU, test-time training) builds the model as
before, and the labels are the same either way: the session is the same file.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.inference.onnx_backend import OnnxUNet, cache_dir, onnx_installed
from napari_cellseg.inference.onnx_cache import keep_json, read_json, used_and_pruned
from napari_cellseg.inference.onnx_int8 import (
    AGREEMENT_FLOOR,
    check_key,
    checked_agreement,
    int8_path,
)
from napari_cellseg.models.weights import LoadedModel, load_weights, read_card

__all__ = ["KNOWN_VERSION", "file_key", "known_session", "load", "record_path", "remember"]

KNOWN_VERSION = 1
"""Part of every record's key: raised whenever loading or exporting changes what a weight
file's network computes, so that older records are not followed."""
_FAMILIES = ("unet",)
_SESSIONS: weakref.WeakKeyDictionary[object, dict[tuple, OnnxUNet]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def file_key(path: Path, card: Any) -> str:
    """A key for the weight file ``path`` as it is now, read as ``card`` describes it."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    described = json.dumps(
        [KNOWN_VERSION, card.family, card.builder_args, card.input_channels], sort_keys=True
    )
    digest.update(described.encode())
    return digest.hexdigest()[:32]


def record_path(key: str) -> Path:
    """Where the record of the weight file with :func:`file_key` ``key`` is kept."""
    return cache_dir() / "known" / f"{key}.json"


def _read(key: str) -> dict:
    return read_json(record_path(key))


def _export(record: dict) -> Path | None:
    """The export a record names, when it is still in the cache."""
    name = record.get("export")
    if not isinstance(name, str) or "/" in name or not name.endswith(".onnx"):
        return None
    path = cache_dir() / name
    return path if path.is_file() else None


def _float32_passed(export: Path, record: dict) -> bool:
    """Whether ``export`` passed its check against PyTorch on this CPU and ONNX Runtime."""
    try:
        return check_key(export) in record.get("checked", [])
    except OSError:  # pruned meanwhile
        return False


def load(path: str | Path, device: torch.device) -> LoadedModel:
    """:func:`~napari_cellseg.models.weights.load_weights`, deferring the model's build
    when the file's export is known here (see the module docstring).

    Only native ``.safetensors`` U-Nets on the CPU with ONNX Runtime installed are looked
    up; every other file loads as before. A loaded file gets its :func:`file_key` either
    way, so that a process that builds it records the export it then uses.
    """
    path = Path(path)
    if not (
        device.type == "cpu"
        and path.suffix == ".safetensors"
        and path.is_file()
        and onnx_installed()
    ):
        return load_weights(path, device=device)
    card = read_card(path)  # inferred from the tensors for a file without a card: not again
    if card.family not in _FAMILIES:
        return load_weights(path, device=device, card=card)
    key = file_key(path, card)
    record = _read(key)
    export = _export(record)
    if record and export is None:  # its export was pruned from the cache: the record goes too
        record_path(key).unlink(missing_ok=True)
    if export is not None and (_float32_passed(export, record) or _int8_passed(export)):
        loaded = LoadedModel.deferred(
            lambda: load_weights(path, device=device, card=card).model, card, path, "safetensors"
        )
    else:
        loaded = load_weights(path, device=device, card=card)
    loaded.file_key = key
    return loaded


def _int8_passed(export: Path) -> bool:
    agreement = checked_agreement(int8_path(export))
    return agreement is not None and agreement >= AGREEMENT_FLOOR


def known_session(loaded: LoadedModel, precision: str) -> OnnxUNet | None:
    """The session of ``loaded``'s recorded export (``precision`` ``"float32"`` or
    ``"int8"``) when its model is still deferred and the export passed its check on this
    machine; ``None`` when the model must be built (the caller then goes the usual way)."""
    if loaded.built or loaded.file_key is None:
        return None
    threads = torch.get_num_threads()
    with _LOCK:
        sessions = _SESSIONS.setdefault(loaded.identity, {})
        known = sessions.get((precision, threads))
        if known is not None:
            return known
        record = _read(loaded.file_key)
        export = _export(record)
        if export is None:
            return None
        int8 = precision == "int8"
        if not (_int8_passed(export) if int8 else _float32_passed(export, record)):
            return None
        target = int8_path(export) if int8 else export
        try:
            runner = OnnxUNet(target, threads, keep_optimized=not int8)
        except Exception:  # unreadable: the usual way makes it again (or says why not)
            return None
        runner.precision, runner.export = precision, export
        sessions[(precision, threads)] = runner
    used_and_pruned(target)
    return runner


def remember(loaded: LoadedModel, runner: OnnxUNet) -> None:
    """Record that ``loaded``'s file runs as ``runner``'s export (float32, checked against
    PyTorch in this process, or the int8 copy of it), when the model is still as loaded.

    A read-only cache records nothing; the next process then builds the model again.
    """
    if loaded.file_key is None or not loaded.built or not loaded.pristine:
        return
    export = runner.export
    if not export.is_file():
        return
    known = _read(loaded.file_key)
    checked = known.get("checked")
    if known.get("export") != export.name or not isinstance(checked, list):
        checked = []
    if runner.precision == "float32" and check_key(export) not in checked:
        checked = [*checked, check_key(export)][-8:]  # a few CPUs sharing one cache
    record = {"export": export.name, "checked": checked}
    if record != known:  # written once, not at every run
        keep_json(record_path(loaded.file_key), record)
