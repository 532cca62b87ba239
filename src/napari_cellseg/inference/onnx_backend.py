"""ONNX Runtime for U-Nets on the CPU: export once per weight file, cache, check, fall back.

On this project's 2-core benchmark machine ONNX Runtime runs the demo U-Net as fast as
PyTorch or faster, with identical labels (``bench/inference.py --compare-baseline``,
``docs/benchmarks.md``): 1.96x end to end at 256², 1.01-1.24x from 520x696 to 2048² in
session 20 (1.35-1.9x in session 7, before PyTorch's CPU tiles went channels-last). So
``PredictParams.backend="auto"`` uses it on the CPU whenever the ``onnx`` extra
(``onnxruntime`` and ``onnx``) is installed. Mask R-CNNs and GPUs stay on
PyTorch: torchvision's detector exports only with fixed image sizes and data-dependent
control flow, and on CUDA PyTorch is already the fast path.

``backend="bf16"`` is the other CPU choice, for both families: PyTorch with bfloat16 autocast
and channels-last tiles, on CPUs with native bfloat16 instructions (AVX512-BF16 or AMX on
x86, BF16 on ARM; :func:`cpu_bf16_supported`). On this project's 2-core benchmark machine it
ran the demo U-Net 1.3-1.7x as fast end to end as ONNX Runtime (520x696 to 2048² images);
its labels are not bit-identical to float32's, so it is never chosen automatically
(``docs/benchmarks.md`` gives the measured difference). Elsewhere it falls back to float32
PyTorch with a notice.

A model is exported (``torch.onnx.export``, TorchScript tracer, dynamic batch and tile size)
to ``<cache>/onnx/<sha256 of its weights>-c<channels>.onnx`` the first time it runs, written
through a temporary file and a rename, and reused by every later process. Each new session
is checked against PyTorch on one random tile before use; an export that fails or disagrees
falls back to PyTorch with a notice, never silently to a different result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError, first_line
from napari_cellseg.inference.onnx_cache import (
    cache_dir,
    cache_limit_bytes,
    forget_export,
    used_and_pruned,
)
from napari_cellseg.inference.onnx_optimized import open_session
from napari_cellseg.models.weights import state_versions

__all__ = [
    "ONNX_EXTRA_HINT",
    "SESSIONS",
    "OnnxUNet",
    "SessionCache",
    "cache_dir",
    "cache_limit_bytes",
    "choose_backend",
    "cpu_bf16_supported",
    "export_path",
    "model_dtype",
    "onnx_installed",
    "onnx_unet",
    "session_options",
    "state_versions",
    "used_and_pruned",
    "weights_fingerprint",
]

ONNX_EXTRA_HINT = "pip install 'napari-cellseg[onnx]'"
#: Largest absolute difference of logits between ONNX Runtime and PyTorch accepted by the
#: check every new session passes (float32 differences measured: about 6e-6).
CHECK_TOLERANCE = 1e-3
#: The check's tile edge: a multiple of 32, so that every U-Net takes it.
CHECK_TILE = 64


def onnx_installed() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package can be imported (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's check: AVX512-BF16, AMX, ARM BF16).

    Without such instructions bfloat16 is emulated and slower than float32.
    """
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # a build without oneDNN
        return False


def choose_backend(backend: str, family: str, device: torch.device) -> tuple[str, str | None]:
    """The backend that will run, and a notice when it is not the one asked for.

    Parameters
    ----------
    backend : str
        ``auto``, ``torch``, ``onnx``, ``int8`` or ``bf16`` (``PredictParams.backend``).
    family : str
        The model family; only U-Nets run on ONNX Runtime.
    device : torch.device
        Only the CPU runs on ONNX Runtime.

    Returns
    -------
    tuple
        ``("onnx", "int8", "bf16" or "torch", notice or None)``.

    Raises
    ------
    CellsegError
        ``onnx`` or ``int8`` asked for explicitly but ONNX Runtime is not installed.

    Examples
    --------
    >>> choose_backend("torch", "unet", torch.device("cpu"))
    ('torch', None)
    >>> choose_backend("onnx", "maskrcnn", torch.device("cpu"))[0]
    'torch'
    >>> choose_backend("int8", "maskrcnn", torch.device("cpu"))
    ('torch', 'the int8 backend runs U-Nets on the CPU only; Mask R-CNNs run on PyTorch')
    """
    if backend == "torch":
        return "torch", None
    if backend == "bf16":
        if device.type != "cpu":
            return "torch", (
                f"the bf16 backend is for the CPU; on {device.type} the model runs with its "
                "mixed precision setting"
            )
        if not cpu_bf16_supported():
            return "torch", (
                "this CPU has no bfloat16 instructions (AVX512-BF16, AMX or ARM BF16), where "
                "bfloat16 would be slower; running PyTorch in float32"
            )
        return "bf16", None
    if family != "unet" or device.type != "cpu":
        note = None
        if backend in ("onnx", "int8"):
            what = "Mask R-CNNs" if family == "maskrcnn" else f"{device.type} devices"
            name = "ONNX" if backend == "onnx" else backend
            note = f"the {name} backend runs U-Nets on the CPU only; {what} run on PyTorch"
        return "torch", note
    if onnx_installed():
        return ("int8" if backend == "int8" else "onnx"), None
    if backend in ("onnx", "int8"):
        raise CellsegError(
            f"ONNX Runtime is not installed: {ONNX_EXTRA_HINT}, or choose the torch backend"
        )
    return "torch", None


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's state (names, dtypes, shapes and values): the export's cache key.

    >>> a, b = torch.nn.Conv2d(1, 1, 1), torch.nn.Conv2d(1, 1, 1)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> weights_fingerprint(a) == weights_fingerprint(b)
    True
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu")
        if value.numel() > 1 and not any(value.stride()):  # one value seen everywhere (an
            value = value.reshape(-1)[:1]  # unused stage's zeros, unused_stages.py): hash it once
        value = value.contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(tensor.shape)};".encode())
        if value.dtype != torch.bfloat16:  # the array itself, not a copy of its bytes
            digest.update(value.reshape(-1).numpy().view(np.uint8))
    return digest.hexdigest()


def session_options(threads: int) -> Any:
    """The ``onnxruntime.SessionOptions`` every U-Net session opens with (``threads``
    intra-op threads, full graph optimization, no memory pattern)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The memory pattern plans one block for a whole run's buffers on top of the arena:
    # measured on the demo U-Net, peak 1466 -> 1118 MiB for a 1024² tile (785 -> 729 at
    # 576²) at the same speed, so it is off (docs/inference.md).
    options.enable_mem_pattern = False
    return options


class OnnxUNet:
    """An ONNX Runtime session that maps ``(B, C, H, W)`` float32 tiles to logits."""

    #: ``"float32"``, or ``"int8"`` for a quantized copy (:mod:`.onnx_int8`).
    precision = "float32"

    def __init__(self, path: Path, threads: int, keep_optimized: bool = False) -> None:
        self.path = path
        #: The float32 export this session runs (its int8 copy sets it to the export's path).
        self.export = path
        # keep_optimized: the graph optimized for this CPU is kept beside the export and
        # reopened as is (:mod:`.onnx_optimized`: about 20 MiB less for the demo U-Net).
        self.session = open_session(path, session_options(threads), keep_optimized)
        self._input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` (float32, C-contiguous)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self._input: x})[0]

    def release(self) -> None:
        """Hand the memory arena's idle buffers back to the system.

        ONNX Runtime keeps the buffers of its largest run in its arena, so that the next tile
        needs no new allocation: between tiles of a plane that is what makes it fast, but
        after a plane it holds the activations of a whole tile (about 130 MiB for 576² tiles)
        through the post-processing and while the viewer sits idle. One run of a 32×32 tile
        with arena shrinkage returns them (``memory.enable_memory_arena_shrinkage``).
        """
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        channels = self.session.get_inputs()[0].shape[1]
        tiny = np.zeros((1, channels if isinstance(channels, int) else 1, 32, 32), np.float32)
        self.session.run(None, {self._input: tiny}, options)


class SessionCache:
    """This process's sessions, one per model, each valid while the model's weights (not
    modified in place) and the thread count stay those it was made for.

    ``lock`` (re-entrant) is held while a session is made, so that two threads do not
    export or quantize the same model at once.
    """

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, OnnxUNet]] = (
            weakref.WeakKeyDictionary()
        )
        self.lock = threading.RLock()

    @staticmethod
    def key(model: torch.nn.Module, channels: int) -> tuple:
        """What a session must have been made for to serve ``model`` now."""
        return (state_versions(model), channels, torch.get_num_threads())

    def get(self, model: torch.nn.Module, key: tuple) -> OnnxUNet | None:
        """The session made for ``model`` under ``key``, if any."""
        with self.lock:
            known = self._sessions.get(model)
            return known[1] if known is not None and known[0] == key else None

    def put(self, model: torch.nn.Module, key: tuple, runner: OnnxUNet) -> None:
        with self.lock:
            self._sessions[model] = (key, runner)

    def forget(self, model: torch.nn.Module) -> None:
        """Drop ``model``'s session (its memory goes with it)."""
        with self.lock:
            self._sessions.pop(model, None)

    def clear(self) -> None:
        with self.lock:
            self._sessions.clear()

    def __contains__(self, model: torch.nn.Module) -> bool:
        return model in self._sessions


#: float32 sessions (:func:`onnx_unet`).
SESSIONS = SessionCache()


#: Each model's last fingerprint, with the :func:`state_versions` it was taken at (a new
#: session of an unchanged model, e.g. int8's float32 export, hashes nothing again).
_FINGERPRINTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]] = (
    weakref.WeakKeyDictionary()
)


def export_path(model: torch.nn.Module, channels: int) -> Path:
    """Where ``model``'s float32 export for ``channels`` input channels is (or will be) cached."""
    versions = state_versions(model)
    known = _FINGERPRINTS.get(model)
    if known is None or known[0] != versions:
        known = _FINGERPRINTS[model] = (versions, weights_fingerprint(model))
    return cache_dir() / f"{known[1]}-c{channels}.onnx"


def _export(model: torch.nn.Module, channels: int, path: Path) -> None:
    """Trace ``model`` (float32, CPU) into ``path`` through a temporary file and a rename."""
    import copy

    traced = copy.deepcopy(model).float().to("cpu").eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    example = torch.zeros(1, channels, CHECK_TILE, CHECK_TILE)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                traced,
                (example,),
                str(partial),
                input_names=["tiles"],
                output_names=["logits"],
                dynamic_axes={"tiles": dynamic, "logits": dynamic},
                opset_version=17,
                dynamo=False,
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _check(model: torch.nn.Module, runner: OnnxUNet, channels: int) -> float:
    """Largest logit difference between ``runner`` and ``model`` on one random tile."""
    x = torch.from_numpy(
        np.random.default_rng(0).standard_normal((1, channels, CHECK_TILE, CHECK_TILE), np.float32)
    )
    with torch.inference_mode():
        ours = model(x.to(model_dtype(model))).float().numpy()
    return float(np.abs(runner(x.numpy()) - ours).max())


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s parameters (float32 for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32


def onnx_unet(model: torch.nn.Module, channels: int) -> tuple[OnnxUNet | None, str | None]:
    """An ONNX Runtime session for ``model`` (exported or taken from the cache), or why not.

    Parameters
    ----------
    model : torch.nn.Module
        A U-Net on the CPU, in eval mode.
    channels : int
        Its input channels.

    Returns
    -------
    tuple
        ``(session, None)``, or ``(None, notice)`` when the export, the session or the check
        failed (the caller then runs PyTorch).
    """
    key = SESSIONS.key(model, channels)
    with SESSIONS.lock:
        known = SESSIONS.get(model, key)
        if known is not None:
            return known, None
        path = export_path(model, channels)
        try:
            if not path.is_file():
                _export(model, channels, path)
            runner = OnnxUNet(path, torch.get_num_threads(), keep_optimized=True)
            error = _check(model, runner, channels)
        except Exception as exc:  # any export/runtime failure: PyTorch instead, said once
            forget_export(path)
            reason = first_line(exc)[:160]
            return None, f"ONNX Runtime could not run this model ({reason}); using PyTorch"
        if not error <= CHECK_TOLERANCE:
            forget_export(path)
            return None, (
                f"ONNX Runtime's output differs from PyTorch's by {error:.2g} for this model; "
                "using PyTorch"
            )
        SESSIONS.put(model, key, runner)
    used_and_pruned(path)
    return runner, None
