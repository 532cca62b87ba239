"""GUI responsiveness: how late the Qt event loop runs while the dock segments and trains.

A real napari viewer (run it under Xvfb) gets the napari-cellseg dock and a large image: a
2048×2048 RGB mosaic of the three bundled sample images. A ``QTimer`` asks to fire every
10 ms; each tick's lateness is the measured interval minus 10 ms. Phases:

- ``idle``: nothing runs, nobody touches the viewer (5 s);
- ``interact``: no job, but every 100 ms the camera pans/zooms, the image layer's opacity
  changes and a brush dab is painted into a scratch Labels layer (the cost of redrawing
  alone, the baseline for the job phases);
- ``add-labels``: napari alone adds a Labels layer of the mosaic's size (about 4000 objects)
  with ``viewer.add_labels``, three times 1.5 s apart, with the same interaction: napari's own
  cost of showing a result, the baseline for the ``segment`` phase's new result layer;
- ``segment``: the Segment tab runs the bundled demo U-Net on the mosaic to completion
  (``dock.segment.run()``), with the same interaction; its result is a new Labels layer;
- ``threshold``: the probability threshold moves to 0.6; the kept network output is
  post-processed again in a worker and the result layer's data replaced (steady state);
- ``resegment``: Run again on the same image: the existing result layer gets the new data;
- ``finetune``: the Fine-tune tab trains from the demo U-Net on a copy of ``sample_data``
  for ``--train-seconds`` (20 s), then Stop, waiting until the worker has ended; same
  interaction.

Per phase it reports max, p99, p95 and median lateness (ms), the number of ticks and the
fraction of ticks later than 50 ms (stalls), and what each repaint of the main window cost
(``frames``: Qt's update requests of the top-level window, timed around napari's
``_QtMainWindow.event``; with software OpenGL this is the floor under every stall while
the viewer moves). ``--trace-stalls`` adds a sampler thread that
records the main thread's Python stack whenever it has not ticked for 40 ms; the most
common stacks of each phase go into the JSON (the sampler competes for the GIL, so the
numbers of a traced run are a little worse). Usage:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/gui_responsiveness.py
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/gui_responsiveness.py \\
        --trace-stalls --out bench/results/gui_responsiveness_traced.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import rgb_mosaic

import napari_cellseg._napari  # noqa: F401  (keeps triton out before napari's GL context)

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_MS = 10
STALL_MS = 50.0
INTERACT_MS = 100
PHASES = ("idle", "interact", "add-labels", "segment", "threshold", "resegment", "finetune")


# -- the large image --------------------------------------------------------------------------
def mosaic(size: int = 2048) -> np.ndarray:
    """A size×size RGB uint8 mosaic of the bundled sample images (row by row)."""
    from napari_cellseg.io.samples import list_samples

    return rgb_mosaic([sample.image_path for sample in list_samples()], size)


def grid_labels(size: int, cell: int = 32) -> np.ndarray:
    """A size×size ``uint16`` labels image: one square object per ``cell``² block."""
    n = -(-size // cell)
    ids = (np.arange(n * n, dtype=np.uint16) + 1).reshape(n, n)
    labels = np.repeat(np.repeat(ids, cell, axis=0), cell, axis=1)[:size, :size].copy()
    labels[::cell, :] = 0  # a background line between objects
    labels[:, ::cell] = 0
    return labels


# -- measuring --------------------------------------------------------------------------------
class LatenessProbe:
    """A 10 ms ``QTimer``; records each tick's lateness into the current phase."""

    def __init__(self) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.phase: str | None = None
        self.lateness: dict[str, list[float]] = collections.defaultdict(list)
        self.intervals: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self.last_tick = time.perf_counter()
        self._last: float | None = None
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.phase is not None and self._last is not None:
            self.lateness[self.phase].append((now - self._last) * 1000.0 - INTERVAL_MS)
            self.intervals[self.phase].append((self._last, now))
        self._last = self.last_tick = now

    def begin(self, phase: str) -> None:
        self.phase, self._last = phase, None

    def end(self) -> None:
        self.phase = None


class InsertTimer:
    """Times every ``viewer.layers.insert`` (napari's ``add_*`` and ``append`` go through it)."""

    def __init__(self, probe: LatenessProbe, layers: Any) -> None:
        self.ms: dict[str, list[float]] = collections.defaultdict(list)
        insert = layers.insert

        def timed_insert(index: int, value: Any) -> None:
            start = time.perf_counter()
            insert(index, value)
            if probe.phase is not None:
                self.ms[probe.phase].append((time.perf_counter() - start) * 1000.0)

        layers.insert = timed_insert


class FrameTimer:
    """Times each repaint of the main window (its ``UpdateRequest`` events) per phase.

    napari's ``_QtMainWindow.event`` is wrapped at class level for this process only: Qt
    composes the whole window there (the vispy canvas and every widget), so its duration
    is the cost of one frame on this display.
    """

    def __init__(self, probe: LatenessProbe, window: Any) -> None:
        from qtpy.QtCore import QEvent

        self.probe = probe
        self.frames: dict[str, list[float]] = collections.defaultdict(list)
        self.spans: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        cls = type(window)
        original = cls.event
        update_request = QEvent.Type.UpdateRequest
        frames, spans = self.frames, self.spans

        def event(self_: Any, e: Any) -> bool:
            if e.type() != update_request or probe.phase is None:
                return original(self_, e)
            start = time.perf_counter()
            try:
                return original(self_, e)
            finally:
                end = time.perf_counter()
                frames[probe.phase].append((end - start) * 1000.0)
                spans[probe.phase].append((start, end))

        cls.event = event

    def stats(self, phase: str) -> dict[str, float | int]:
        """Frame costs, and each tick's lateness less the repaints that ran inside it."""
        a = np.asarray(self.frames.get(phase, []), float)
        if a.size == 0:
            return {"frames": 0}
        spans = np.asarray(self.spans[phase], float).reshape(-1, 2)
        beyond = []
        for (t0, t1), late in zip(
            self.probe.intervals[phase], self.probe.lateness[phase], strict=True
        ):
            inside = np.clip(np.minimum(spans[:, 1], t1) - np.maximum(spans[:, 0], t0), 0, None)
            beyond.append(late - 1000.0 * float(inside.sum()))
        b = np.asarray(beyond, float)
        return {
            "frames": int(a.size),
            "frame_median_ms": float(np.median(a)),
            "frame_p95_ms": float(np.percentile(a, 95)),
            "frame_max_ms": float(a.max()),
            "beyond_frames_max_ms": float(b.max()),
            "beyond_frames_p99_ms": float(np.percentile(b, 99)),
            "beyond_frames_stalls": int(np.sum(b > STALL_MS)),
        }


class StallSampler(threading.Thread):
    """Samples the main thread's stack while it has not ticked for ``threshold_ms``.

    The innermost frames of the other threads (the workers) go with each sample: a worker
    in pure-Python code holds the GIL that the main thread needs.
    """

    def __init__(self, probe: LatenessProbe, threshold_ms: float = 40.0) -> None:
        super().__init__(daemon=True, name="stall-sampler")
        self.probe, self.threshold = probe, threshold_ms / 1000.0
        self.main_id = threading.main_thread().ident
        self.samples: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.main_samples: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )  # the main thread's stack alone: one long stall's samples add up here
        self.running = True

    def run(self) -> None:
        while self.running:
            time.sleep(0.01)
            phase = self.probe.phase
            if phase is None or time.perf_counter() - self.probe.last_tick < self.threshold:
                continue
            frames = sys._current_frames()
            frame = frames.get(self.main_id)
            if frame is None:
                continue
            text = _format(traceback.extract_stack(frame)[-14:])
            self.main_samples[phase][text] += 1
            for ident, other in frames.items():  # what the workers do meanwhile
                if ident not in (self.main_id, self.ident):
                    text += "\n[other thread] " + _format(traceback.extract_stack(other)[-3:])
            self.samples[phase][text] += 1


def _format(stack: traceback.StackSummary) -> str:
    return "\n".join(
        f"{_short(f.filename)}:{f.lineno} {f.name}: {(f.line or '').strip()[:90]}" for f in stack
    )


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def stats(values: list[float]) -> dict[str, float | int]:
    a = np.asarray(values, float)
    if a.size == 0:
        return {"ticks": 0}
    return {
        "ticks": int(a.size),
        "max_ms": float(a.max()),
        "p99_ms": float(np.percentile(a, 99)),
        "p95_ms": float(np.percentile(a, 95)),
        "median_ms": float(np.median(a)),
        "stall_fraction": float(np.mean(a > STALL_MS)),
        "stalls": int(np.sum(a > STALL_MS)),
    }


# -- driving the viewer ------------------------------------------------------------------------
def wait_until(condition: Callable[[], bool], timeout_s: float, poll_ms: int = 20) -> bool:
    """Run the Qt event loop until ``condition()`` holds (or the timeout)."""
    from qtpy.QtCore import QEventLoop, QTimer

    if condition():
        return True
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    timer = QTimer()
    timer.setInterval(poll_ms)
    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    return condition()


def wait(seconds: float) -> None:
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 5)


class Interaction:
    """Every 100 ms: pan, zoom, change a layer's opacity, paint a dab into ``scratch``."""

    def __init__(self, viewer: Any, layer: Any, scratch: Any) -> None:
        from qtpy.QtCore import QTimer

        scene = getattr(viewer, "scene", None)
        self.camera = scene.camera if scene is not None else viewer.camera
        self.layer, self.scratch = layer, scratch
        self.n = 0
        self.centre = tuple(self.camera.center)
        self.zoom = float(self.camera.zoom)
        self._timer = QTimer()
        self._timer.setInterval(INTERACT_MS)
        self._timer.timeout.connect(self._step)

    def _step(self) -> None:
        self.n += 1
        angle = self.n * 0.3
        c = self.centre
        self.camera.center = (*c[:-2], c[-2] + 200 * np.sin(angle), c[-1] + 200 * np.cos(angle))
        self.camera.zoom = self.zoom * (1.0 + 0.2 * np.sin(angle / 2))
        self.layer.opacity = 0.7 if self.n % 2 else 1.0
        h, w = self.scratch.data.shape[-2:]  # a brush dab along a spiral (napari's own paint)
        radius = 0.1 + 0.3 * (self.n % 100) / 100
        y, x = h * (0.5 + radius * np.sin(angle)), w * (0.5 + radius * np.cos(angle))
        self.scratch.paint((y, x), 1 + self.n % 50)

    def __enter__(self) -> Interaction:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.stop()


# -- the run ---------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="mosaic edge in pixels")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--train-seconds", type=float, default=20.0)
    parser.add_argument("--device", default="auto", help="device of both runs")
    parser.add_argument("--trace-stalls", action="store_true", help="sample stacks in stalls")
    parser.add_argument(
        "--phases", nargs="+", default=list(PHASES), choices=PHASES, help="phases to run"
    )
    parser.add_argument(
        "--no-interaction", action="store_true", help="nobody touches the viewer during the runs"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads before the runs"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "gui_responsiveness.json"
    )
    args = parser.parse_args()

    import napari
    import torch

    from napari_cellseg._napari.dock import CellsegDock
    from napari_cellseg.device import resolve_device
    from napari_cellseg.events import EpochEnd
    from napari_cellseg.io.samples import sample_data_dir
    from napari_cellseg.models import list_bundled_weights

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    os.environ.setdefault("NAPARI_CELLSEG_CONFIG_DIR", tempfile.mkdtemp(prefix="cellseg-cfg-"))
    work = Path(tempfile.mkdtemp(prefix="cellseg-gui-bench-"))
    training_set = work / "training set"
    shutil.copytree(sample_data_dir(), training_set, ignore=shutil.ignore_patterns("models"))
    demo = next(p for p in list_bundled_weights() if p.name == "unet_dsb.safetensors")

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    image = viewer.add_image(mosaic(args.size), name="mosaic", rgb=True)
    scratch = viewer.add_labels(
        np.zeros((args.size, args.size), np.uint16), name="scratch paint", opacity=0.5
    )
    scratch.brush_size = 15
    viewer.layers.selection.active = image  # the Segment tab picks the mosaic
    dock = CellsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="napari-cellseg", area="right")
    # the dock warms up heavy imports in a background thread; phases start once it is done
    from napari_cellseg._napari._warmup import wait_for_warmup

    warm_start = time.perf_counter()
    while not wait_for_warmup(0.05):
        wait(0.05)
    warmup_seconds = time.perf_counter() - warm_start
    probe = LatenessProbe()
    frame_timer = FrameTimer(probe, viewer.window._qt_window)
    insert_timer = InsertTimer(probe, viewer.layers)
    sampler = StallSampler(probe) if args.trace_stalls else None
    if sampler is not None:
        sampler.start()
    wait(2.0)  # first draws, texture upload
    phases: dict[str, dict[str, Any]] = {}

    def timed(name: str, body: Callable[[], dict[str, Any]]) -> None:
        print(f"phase {name}…", flush=True)
        start = time.perf_counter()
        probe.begin(name)
        extra = body()
        probe.end()
        phases[name] = {"seconds": time.perf_counter() - start, **extra}
        print(f"  {phases[name]['seconds']:.1f} s {extra}", flush=True)

    def run_phase(name: str, body: Callable[[], dict[str, Any]]) -> None:
        if name in args.phases:
            timed(name, body)

    def touching() -> Interaction | contextlib.AbstractContextManager[None]:
        if args.no_interaction:
            return contextlib.nullcontext()
        return Interaction(viewer, image, scratch)

    def interactions(it: Interaction | None) -> int:
        return it.n if it is not None else 0

    # idle and interaction alone
    run_phase("idle", lambda: wait(args.idle_seconds) or {})

    def interact() -> dict[str, Any]:
        with Interaction(viewer, image, scratch) as it:
            wait(args.idle_seconds)
        return {"interactions": it.n}

    run_phase("interact", interact)

    # napari alone shows a labels image of the result's size: the baseline for `segment`
    added: list[Any] = []

    def add_labels() -> dict[str, Any]:
        labels = grid_labels(args.size)
        insert_ms = []
        with touching() as it:
            for i in range(3):
                start = time.perf_counter()
                added.append(viewer.add_labels(labels.copy(), name=f"napari alone {i + 1}"))
                insert_ms.append((time.perf_counter() - start) * 1000.0)
                wait(1.5)
        return {"interactions": interactions(it), "add_labels_ms": insert_ms}

    run_phase("add-labels", add_labels)
    for layer in added:
        viewer.layers.remove(layer)
    viewer.layers.selection.active = image
    wait(1.0)

    # segmentation of the mosaic with the demo U-Net
    seg = dock.segment
    dock.tabs.setCurrentIndex(0)
    seg.image_layer.value = image
    seg.weights.value = demo
    seg.device.value = args.device

    def segment() -> dict[str, Any]:
        with touching() as it:
            worker = seg.run()
            if worker is None:
                raise SystemExit(f"segmentation did not start: {seg.status.value}")
            wait_until(lambda: not seg.running, 1800)
            wait(0.5)  # the new layers' first draws
        prediction = seg.last_prediction
        return {
            "interactions": interactions(it),
            "objects": None if prediction is None else prediction.n_objects,
            "timings": None if prediction is None else prediction.timings,
        }

    run_phase("segment", segment)

    # steady state: the result layer exists, so its data is replaced rather than a layer added
    def threshold() -> dict[str, Any]:
        runner = seg._runner
        before = seg.last_prediction
        with touching() as it:
            # re-applied in a worker from the kept network output
            seg._options.thresholds["prob_threshold"].value = 0.6
            wait_until(lambda: seg.last_prediction is not before and not runner.reapplying, 600)
            wait(0.5)
        prediction = seg.last_prediction
        return {"interactions": interactions(it), "objects": prediction.n_objects}

    run_phase("threshold", threshold)
    run_phase("resegment", segment)  # Run again: same layer, new data

    # fine-tuning on the sample data, stopped after train_seconds
    ft = dock.finetune
    dock.tabs.setCurrentIndex(2)
    ft.training_set.value = training_set
    ft.base_weights.value = demo
    ft.output.value = work / "finetuned.safetensors"
    ft.epochs.value = 1000
    ft.patch_size.value = 128
    ft.batch_size.value = 2
    ft.samples_per_epoch.value = 4
    ft.val_fraction.value = 0.34
    ft.device.value = args.device
    epoch_ends: list[int] = []

    def finetune() -> dict[str, Any]:
        with touching() as it:
            ft.start.clicked.emit()
            if not ft.running:
                raise SystemExit(f"training did not start: {ft.status.value}")
            ft.worker.yielded.connect(
                lambda e: epoch_ends.append(e.epoch) if isinstance(e, EpochEnd) else None
            )
            wait(args.train_seconds)
            stop_at = time.perf_counter()
            ft.stop.clicked.emit()
            wait_until(lambda: not ft.running, 600)
            stopped_after = time.perf_counter() - stop_at
            wait(0.5)
        return {
            "interactions": interactions(it),
            "stop_to_end_s": stopped_after,
            "steps": len(ft.monitor.steps[0]),
            "epoch_ends": epoch_ends,
        }

    run_phase("finetune", finetune)

    if sampler is not None:
        sampler.running = False
    results = {
        "hardware": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "device": str(resolve_device(args.device)),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "napari": napari.__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "image": f"{args.size}x{args.size} RGB mosaic of the sample images",
            "timer_interval_ms": INTERVAL_MS,
            "interaction_every_ms": INTERACT_MS,
            "stall_ms": STALL_MS,
            "train_seconds": args.train_seconds,
            "traced": args.trace_stalls,
            "interaction_during_runs": not args.no_interaction,
            "warmup_imports_seconds_after_dock_open": warmup_seconds,
        },
        "phases": {
            name: {
                **info,
                **stats(probe.lateness[name]),
                **frame_timer.stats(name),
                "layer_inserts_ms": insert_timer.ms.get(name, []),
            }
            for name, info in phases.items()
        },
    }
    if sampler is not None:
        results["stall_stacks"] = {
            phase: [{"samples": n, "stack": s.splitlines()} for s, n in counter.most_common(8)]
            for phase, counter in sampler.samples.items()
        }
        results["stall_main_stacks"] = {
            phase: [{"samples": n, "stack": s.splitlines()} for s, n in counter.most_common(8)]
            for phase, counter in sampler.main_samples.items()
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")

    print()
    print(
        "| phase | seconds | ticks | max ms | p99 ms | p95 ms | median ms | stalls > 50 ms "
        "| frames | frame median / p95 / max ms | beyond repaints: max / p99 ms, stalls |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results["phases"].items():
        print(
            f"| {name} | {r['seconds']:.1f} | {r['ticks']} | {r['max_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['p95_ms']:.1f} | {r['median_ms']:.1f} | "
            f"{100 * r['stall_fraction']:.2f} % ({r['stalls']}) | {r.get('frames', 0)} | "
            f"{r.get('frame_median_ms', 0):.1f} / {r.get('frame_p95_ms', 0):.1f} / "
            f"{r.get('frame_max_ms', 0):.1f} | {r.get('beyond_frames_max_ms', 0):.1f} / "
            f"{r.get('beyond_frames_p99_ms', 0):.1f}, {r.get('beyond_frames_stalls', 0)} |"
        )
    for name, r in results["phases"].items():
        if r["layer_inserts_ms"]:
            inserts = ", ".join(f"{ms:.1f}" for ms in r["layer_inserts_ms"])
            print(f"{name}: layer inserts (viewer.layers.insert) {inserts} ms")
    print(f"\nwritten to {args.out}")
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
