"""Import the heavy modules a first run needs before the user starts one.

The first segmentation imports segmentation-models-pytorch, timm and torchvision (C
extensions whose loading holds the GIL), and napari's first Labels layer imports pandas on
the GUI thread. Done during a run, both stall the viewer (``bench/gui_responsiveness.py``
measured 0.45 s); done here, in a background thread started when a widget opens, the run
finds them loaded. The thread is started once per process and is harmless if it fails.

Then it moves every object alive at that point (napari, Qt, torch and their modules: about
600 000 objects) out of the garbage collector's reach with :func:`gc.freeze`. Without that,
each full collection walks all of them, which took 228 ms here; it starts whenever enough
objects were allocated, on whichever thread allocates, and holds the GIL throughout, so a
worker thread's allocations froze the viewer for that long at random moments. Set
``NAPARI_CELLSEG_NO_GC_FREEZE=1`` to keep Python's default (the test suite does, so that
napari's leak checks can still collect test viewers).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import threading

MODULES = (
    "pandas",  # napari's layer features (imported on the GUI thread by the first Labels layer)
    "skimage.color",  # napari's label colormap (built by every new Labels layer)
    "scipy.ndimage",
    "skimage.segmentation",
    "skimage.measure",
    "torchvision",
    "segmentation_models_pytorch",
)

_thread: threading.Thread | None = None
_lock = threading.Lock()


NO_FREEZE_ENV = "NAPARI_CELLSEG_NO_GC_FREEZE"


def _fill_vispy_caches() -> None:
    """Compute vispy's dash patterns (an lru_cache, pure numpy) before a Labels layer needs them.

    Every Labels layer gets a polygon overlay drawn with vispy's agg lines, whose first
    construction fills that cache on the GUI thread: measured 57 ms of the 150 ms that
    inserting the first result layer took, against 90 ms for later ones.
    """
    from vispy.visuals.line.dash_atlas import DashAtlas

    DashAtlas()


def _import_all() -> None:
    for name in MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        _fill_vispy_caches()
    if not os.environ.get(NO_FREEZE_ENV):
        gc.collect()  # once, here, rather than in the middle of a run
        gc.freeze()


def start_warmup() -> threading.Thread:
    """Start importing :data:`MODULES` in a daemon thread (once per process)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name="cellseg-warmup", daemon=True)
            _thread.start()
        return _thread


def wait_for_warmup(timeout: float | None = None) -> bool:
    """Block until the warm-up imports are done; True when they are (or never started)."""
    thread = _thread
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()
