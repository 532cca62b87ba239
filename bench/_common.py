"""What the benchmark scripts share: a peak-memory sampler, a mosaic of real images, the
machine's description and the JSON writer."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class PeakRSS:
    """Samples the process's resident memory in a thread; peaks above the start.

    ``mib`` is all resident memory; ``anon_mib`` leaves out file-backed pages (on Linux
    ``rss - shared``), which is where the pages of a memory-mapped input are counted.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        info = self.process.memory_info()
        self.start = info.rss
        self.start_anon = info.rss - getattr(info, "shared", 0)
        self.peak = self.start
        self.peak_anon = self.start_anon
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = self.process.memory_info()
            self.peak = max(self.peak, info.rss)
            self.peak_anon = max(self.peak_anon, info.rss - getattr(info, "shared", 0))
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20

    @property
    def anon_mib(self) -> float:
        return (self.peak_anon - self.start_anon) / 2**20


def pack_mosaic(tiles: Sequence[np.ndarray], size: int) -> np.ndarray:
    """A size×size uint8 image filled row by row with ``tiles`` (repeated as needed).

    The tiles are all grey ``(Y, X)`` or all ``(Y, X, C)``; the mosaic is the same.
    """
    out = np.zeros((size, size, *tiles[0].shape[2:]), np.uint8)
    y = x = row_h = i = 0
    while y < size:
        tile = tiles[i % len(tiles)]
        i += 1
        h, w = min(tile.shape[0], size - y), min(tile.shape[1], size - x)
        out[y : y + h, x : x + w] = tile[:h, :w]
        row_h = max(row_h, h)
        x += w
        if x >= size:
            x, y, row_h = 0, y + row_h, 0
    return out


def rgb_mosaic(paths: Sequence[Path], size: int) -> np.ndarray:
    """A size×size RGB uint8 mosaic of the images at ``paths`` (grey ones repeated to RGB)."""
    from napari_cellseg.io.images import read_image

    tiles = []
    for path in paths:
        data = np.asarray(read_image(path).data)
        tiles.append(data[..., :3] if data.ndim == 3 else np.stack([data] * 3, axis=-1))
    return pack_mosaic(tiles, size)


def machine(device) -> dict:
    """The machine a run measured: device, GPU name, CPU, usable cores, torch and its threads."""
    import os
    import platform

    import torch

    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def write_json(folder: Path, name: str, result: dict) -> Path:
    """``result`` as indented JSON in ``folder/name`` (folder made if needed); says where."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path
