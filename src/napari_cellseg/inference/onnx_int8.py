"""int8 U-Nets on the CPU: ONNX Runtime with a statically quantized copy of the export.

``PredictParams.backend="int8"`` (opt-in, U-Nets on the CPU) runs a copy of the float32
ONNX export (:mod:`.onnx_backend`) whose convolutions compute in 8-bit integers: weights
int8 per output channel (in a 7-bit range, :func:`quantize_unet`), activations uint8 with
one fixed range per tensor. The ranges come
from the model's own float32 run on the bundled sample images (fluorescence, brightfield
and H&E crops, prepared as the model's card says), so the copy depends only on the weight
file; it is made once (about a second) and cached beside the float32 export as
``<sha256>-c<channels>-int8v<INT8_VERSION>.onnx``.

Why it is worth having: on CPUs with 8-bit dot-product instructions (AVX-VNNI or
AVX512-VNNI: Intel from Ice Lake/Alder Lake, AMD Zen 4) ONNX Runtime's int8 convolutions run
the demo U-Net's network about 2.4x as fast as float32 on this project's AMD EPYC
(AVX512-VNNI; ``docs/benchmarks.md``), and plain AVX2 CPUs still use 8-bit
multiply-adds. The labels are close to, not equal to, float32's, so it is never chosen
automatically.

The copy is checked against the float32 PyTorch model on the calibration tiles: when fewer
than :data:`AGREEMENT_FLOOR` of the pixels get the same class, or anything in quantizing
fails, the float32 ONNX Runtime session runs instead, with a notice saying why. The check's
result is written beside the copy (``<name>.checked.json``) for this CPU and this ONNX
Runtime version, so later sessions on the same machine skip it (about a second, and the
float32 activations of a 256² tile, 39 MiB measured); another CPU or version checks again.
A copy that failed is kept with its result, so that it is not quantized and checked again
at every start: later sessions go straight to float32, with the same notice.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError, first_line
from napari_cellseg.inference.onnx_backend import SESSIONS as FLOAT_SESSIONS
from napari_cellseg.inference.onnx_backend import (
    OnnxUNet,
    SessionCache,
    export_path,
    model_dtype,
    onnx_unet,
    used_and_pruned,
)
from napari_cellseg.inference.onnx_cache import forget_export, keep_json, read_json
from napari_cellseg.inference.onnx_optimized import cpu_id
from napari_cellseg.inference.preprocess import to_model_input
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import list_samples

__all__ = [
    "AGREEMENT_FLOOR",
    "INT8_VERSION",
    "SESSIONS",
    "calibration_tiles",
    "check_key",
    "checked_agreement",
    "class_agreement",
    "int8_path",
    "int8_unet",
    "keep_agreement",
    "quantize_unet",
]

INT8_VERSION = 2
"""Part of the cached file's name: raised whenever calibration or quantization changes."""
CALIBRATION_SIDE = 256
"""Edge of the calibration tiles cut from the sample images (every whole tile of each)."""
AGREEMENT_FLOOR = 0.99
"""Fraction of calibration pixels whose class (argmax, or probability above 0.5 for sigmoid
outputs) must equal float32 PyTorch's for the int8 copy to be used (the demo U-Net: 0.999)."""

#: int8 sessions (:func:`int8_unet`).
SESSIONS = SessionCache()


def int8_path(float_path: Path) -> Path:
    """The int8 copy's cache path beside the float32 export ``float_path``.

    >>> int8_path(Path("/c/onnx/ab-c3.onnx")).name
    'ab-c3-int8v2.onnx'
    """
    return float_path.with_name(f"{float_path.stem}-int8v{INT8_VERSION}{float_path.suffix}")


def calibration_tiles(card: Any, side: int = CALIBRATION_SIDE) -> list[np.ndarray]:
    """Model inputs ``(1, C, side, side)`` cut from the bundled sample images.

    Each sample is prepared as the card says (channel handling and normalisation); a model
    whose channels the sample cannot fill that way (e.g. two fluorescence channels) gets the
    sample's grey values in every channel.
    """
    tiles = []
    for sample in list_samples():
        plane = np.asarray(read_image(sample.image_path).data)
        plane = plane[..., :3] if plane.ndim == 3 else plane  # the samples' alpha is constant
        x = _model_input(plane, card)
        for row in range(0, x.shape[1] - side + 1, side):
            for col in range(0, x.shape[2] - side + 1, side):
                tiles.append(np.ascontiguousarray(x[None, :, row : row + side, col : col + side]))
    return tiles


def _model_input(plane: np.ndarray, card: Any) -> np.ndarray:
    options = {"input_channels": card.input_channels, "normalisation": card.normalisation}
    try:
        return to_model_input(plane, channel_handling=card.channel_handling, **options)
    except CellsegError:
        grey = plane.mean(axis=-1) if plane.ndim == 3 else plane
        stacked = np.repeat(grey[..., None], card.input_channels, axis=-1)
        return to_model_input(stacked.astype(plane.dtype), channel_handling="channels", **options)


def quantize_unet(source: Path, target: Path, tiles: list[np.ndarray]) -> None:
    """Write a statically quantized (QDQ, int8 weights per channel, uint8 activations) copy
    of the float32 export ``source`` to ``target``, calibrated on ``tiles`` (min/max).

    Weights use 7 of their 8 bits (``reduce_range``): CPUs with AVX2 but no VNNI multiply
    uint8 by int8 into 16-bit sums, which full-range weights can overflow (ONNX Runtime's
    quantization guide). On this project's VNNI machine it changed neither the speed nor,
    measurably, the pixel classes (99.87 % against 99.90 % of float32's on 10 DSB images).

    Written through temporary files in the same folder and a rename, so that another
    process never reads a half-written model.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._tiles = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tile = next(self._tiles, None)
            return None if tile is None else {"tiles": tile}

    stem = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    prepared, partial = Path(f"{stem}.pre"), Path(f"{stem}.partial")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(partial),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,  # 7-bit weights: no overflow in AVX2's 16-bit sums
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(partial, target)
    finally:
        for leftover in (prepared, partial):
            leftover.unlink(missing_ok=True)


def class_agreement(a: np.ndarray, b: np.ndarray, activation: str) -> float:
    """Fraction of pixels whose class is the same in logits ``a`` and ``b`` (B, C, H, W).

    >>> a = np.zeros((1, 2, 2, 2), np.float32); b = a.copy(); b[0, 1, 0, 0] = 1
    >>> class_agreement(a, b, "softmax"), class_agreement(a, a, "sigmoid")
    (0.75, 1.0)
    """
    if activation == "sigmoid":
        return float(((a > 0) == (b > 0)).mean())
    return float((a.argmax(1) == b.argmax(1)).mean())


def int8_unet(model: torch.nn.Module, card: Any) -> tuple[OnnxUNet | None, str | None]:
    """An int8 ONNX Runtime session for ``model``, or the float32 one and a notice why not.

    Parameters
    ----------
    model : torch.nn.Module
        A U-Net on the CPU, in eval mode.
    card : ModelCard
        Its card (input channels, channel handling, normalisation, output activation).

    Returns
    -------
    tuple
        ``(session, notice)``: the int8 session and ``None``; or the float32 session (or
        ``None``, PyTorch) and a notice saying why int8 does not run.
    """
    channels = card.input_channels
    key = SESSIONS.key(model, channels)
    with SESSIONS.lock:
        known = SESSIONS.get(model, key)
        return (known, None) if known is not None else _made(model, card, key)


def _made(model: torch.nn.Module, card: Any, key: tuple) -> tuple[OnnxUNet | None, str | None]:
    """:func:`int8_unet` for a model without a session: quantize (once), check, keep."""
    channels = card.input_channels
    export = export_path(model, channels)
    target = int8_path(export)
    try:
        tiles = None
        if not target.is_file():  # the float32 export first (made and checked if need be)
            floating, notice = onnx_unet(model, channels)
            if floating is None:
                return None, notice
            tiles = calibration_tiles(card)
            quantize_unet(floating.path, target, tiles)
            FLOAT_SESSIONS.forget(model)  # not kept beside the int8 one: it costs memory
        agreement = checked_agreement(target)  # this machine's verdict, if it has one
        runner = None
        if agreement is None or agreement >= AGREEMENT_FLOOR:
            runner = OnnxUNet(target, torch.get_num_threads())
            runner.precision, runner.export = "int8", export
        if agreement is None:  # not yet checked on this machine: check, keep the verdict
            tiles = calibration_tiles(card) if tiles is None else tiles
            agreement = _agreement(model, runner, tiles, card.output_activation)
            keep_agreement(target, agreement)
    except Exception as exc:  # any quantization/runtime failure: float32, said once
        forget_export(target)  # the copy and its kept checks: quantized again when next asked
        reason = first_line(exc)[:160]
        return _float32(model, channels, f"could not quantize this model to int8 ({reason})")
    if not agreement >= AGREEMENT_FLOOR:  # the copy and its verdict stay, so that it is
        used_and_pruned(target)  # not quantized and checked again on this machine
        return _float32(
            model,
            channels,
            f"int8 gave {100 * agreement:.1f} % of float32's pixel classes on the calibration "
            f"images (below {100 * AGREEMENT_FLOOR:.0f} %) for this model",
        )
    SESSIONS.put(model, key, runner)
    used_and_pruned(target)
    return runner, None


def _float32(model: torch.nn.Module, channels: int, why: str) -> tuple[OnnxUNet | None, str]:
    """The float32 session (or ``None``: PyTorch) and a notice: ``why``, then what runs."""
    floating, notice = onnx_unet(model, channels)
    if floating is None:
        return None, f"{why}; {notice}" if notice else f"{why}; running PyTorch"
    return floating, f"{why}; running float32"


def _agreement(model: torch.nn.Module, runner: OnnxUNet, tiles: list, activation: str) -> float:
    """Mean :func:`class_agreement` of ``runner`` and float32 ``model`` over ``tiles``."""
    dtype = model_dtype(model)
    scores = []
    with torch.inference_mode():
        for tile in tiles:
            ours = model(torch.from_numpy(tile).to(dtype)).float().numpy()
            scores.append(class_agreement(runner(tile), ours, activation))
    return float(np.mean(scores)) if scores else 0.0


def check_key(target: Path) -> str:
    """What a kept check of the int8 copy ``target`` stands for: the file as it is (size
    and modification time), this ONNX Runtime version and this CPU (model and instruction
    set flags, which decide the int8 kernels)."""
    import onnxruntime as ort

    stat = target.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}:onnxruntime {ort.__version__}:cpu {cpu_id()}"


def _verdicts_path(target: Path) -> Path:
    return target.with_suffix(".checked.json")


def _verdicts(target: Path) -> dict:
    """The checks kept beside ``target``, by :func:`check_key` (empty if none or unreadable)."""
    return read_json(_verdicts_path(target))


def checked_agreement(target: Path) -> float | None:
    """The agreement a check of ``target`` found on this machine, or None (never checked
    here, or the file, ONNX Runtime or CPU changed since)."""
    try:
        key = check_key(target)
    except OSError:  # the copy vanished (pruned by another process)
        return None
    value = _verdicts(target).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def keep_agreement(target: Path, agreement: float) -> None:
    """Write a check of ``target`` (passed or not) beside it (a read-only cache: not kept)."""
    verdicts = {**_verdicts(target), check_key(target): round(float(agreement), 6)}
    keep_json(_verdicts_path(target), verdicts)
