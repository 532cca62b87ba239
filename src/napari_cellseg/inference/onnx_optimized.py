"""ONNX Runtime sessions that open a cached, already optimized copy of their model.

At ``ORT_ENABLE_ALL`` ONNX Runtime rewrites a U-Net's graph when a session opens (fused
convolutions, and on x86 the blocked ``NCHWc`` layout with its own reordered copy of every
convolution's weights). Made from the plain export, a session holds both copies; opening
the optimized graph that an earlier session saved, with optimization off, gives
bit-identical logits, and with the demo U-Net (14 MB of float32 weights) the warm process
of the default backend on this project's 2-core benchmark machine was about 20 MiB smaller
(``bench/results/inference_memory_cpu_s21_final.json`` against ``…_s20_final.json``,
``docs/benchmarks.md``). So the first session of a model on a machine saves its
optimized graph beside the export (``<export stem>.opt-<key>.onnx``) and later sessions
open that. The graph may hold instructions of this CPU (the ``NCHWc`` block width follows its
vector width) and operators of this ONNX Runtime version, so the key is a hash of both: a
cache shared between machines or upgraded in place makes a new copy instead of reusing one
that does not fit. A copy that fails to open is deleted and made again from the export.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_id", "open_session", "optimized_path"]


@functools.lru_cache(maxsize=1)
def cpu_id() -> str:
    """A short hash of this CPU's model and flags (read once per process)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            lines = [ln for ln in info if ln.startswith(("model name", "flags", "Features"))]
        cpu = "".join(dict.fromkeys(lines)) or cpu  # one of each (every core repeats them)
    except OSError:  # not Linux: the processor's name
        pass
    return hashlib.sha256(cpu.encode()).hexdigest()[:16]


def optimized_path(path: Path, version: str) -> Path:
    """Where the optimized graph of the export ``path`` is kept for this CPU and ``version``.

    >>> from unittest import mock
    >>> with mock.patch(f"{__name__}.cpu_id", return_value="cpu"):
    ...     a = optimized_path(Path("/c/abc-c3.onnx"), "1.20.0")
    ...     b = optimized_path(Path("/c/abc-c3.onnx"), "1.21.0")
    >>> a.parent, a.name.startswith("abc-c3.opt-"), a.suffix, a == b
    (PosixPath('/c'), True, '.onnx', False)
    """
    key = hashlib.sha256(f"{cpu_id()}:onnxruntime {version}".encode()).hexdigest()[:16]
    return path.with_name(f"{path.stem}.opt-{key}.onnx")


def open_session(path: Path, options: Any, keep_optimized: bool) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``path`` on the CPU, with ``options``.

    With ``keep_optimized`` the graph optimized for this CPU is opened from its cached copy
    (:func:`optimized_path`) with graph optimization off, or, when there is none yet (or it
    cannot be opened), optimized from ``path`` at ``options``' level and saved through a
    temporary file and a rename for later sessions. Without it, ``path`` is opened as is.
    """
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if not keep_optimized:
        return ort.InferenceSession(str(path), options, providers=providers)
    copy = optimized_path(path, ort.__version__)
    if copy.is_file():
        level = options.graph_optimization_level
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(copy), options, providers=providers)
        except Exception:  # unreadable or from elsewhere: made again below
            copy.unlink(missing_ok=True)
        finally:
            options.graph_optimization_level = level
    partial = copy.with_name(f".{copy.name}.{os.getpid()}.partial")
    options.optimized_model_filepath = str(partial)
    severity = options.log_severity_level
    options.log_severity_level = 3  # not its warning that the saved graph fits this CPU only
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception:  # e.g. a read-only cache: opened as is below, the next one tries again
        session = None
    finally:
        options.optimized_model_filepath = ""
        options.log_severity_level = severity
        if session is not None and partial.is_file():
            with contextlib.suppress(OSError):
                os.replace(partial, copy)
        partial.unlink(missing_ok=True)
    if session is None:
        session = ort.InferenceSession(str(path), options, providers=providers)
    return session
