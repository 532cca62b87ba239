"""``python -m napari_cellseg._launch`` (``make run``): napari with a sample and the dock.

With a display it opens napari, loads the fluorescence sample (image and ground truth) and docks
the napari-cellseg dock; ``--screenshot PATH`` saves a picture of the window and exits. Without
a display it never imports napari: it says so and runs the headless demo instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PLUGIN = "napari-cellseg"
SAMPLE = "dsb_fluorescence"
WINDOW_SIZE = (1600, 1000)
DEMO_DIR = Path("demo-output")


def has_display() -> bool:
    """True when a GUI can open: X11/Wayland display set, or macOS/Windows."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m napari_cellseg._launch",
        description="Open napari with a sample image and the napari-cellseg dock "
        "(or run the headless demo when there is no display).",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PATH",
        help="save a screenshot of the whole window to PATH and exit",
    )
    return parser.parse_args(argv)


def _run_gui(screenshot: Path | None) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    import napari_cellseg._napari  # noqa: F401  (keeps triton out before OpenGL starts)

    viewer = napari.Viewer(title="napari-cellseg")
    viewer.open_sample(PLUGIN, SAMPLE)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Cell segmentation")
    if screenshot is None:
        napari.run()
        return 0

    viewer.window._qt_window.resize(*WINDOW_SIZE)
    for _ in range(5):  # the dock is drawn only once Qt has laid out the sized window
        QApplication.processEvents()
    for _ in range(5):  # the tabbed dock settles its width after the first layout
        QApplication.processEvents()
    viewer.reset_view()  # fit the image to the canvas at its final size
    QApplication.processEvents()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False)
    viewer.close()
    print(f"screenshot saved to {screenshot}")
    return 0


def _run_headless() -> int:
    print(
        "No display found (neither DISPLAY nor WAYLAND_DISPLAY is set): "
        f"running the headless demo instead of napari, writing to {DEMO_DIR}/.",
        flush=True,
    )
    try:
        from napari_cellseg.demo import run_headless_demo
    except ImportError as exc:
        print(f"The headless demo is not available ({exc}); nothing else was done.")
        return 0
    from napari_cellseg.errors import CellsegError

    try:
        result = run_headless_demo(DEMO_DIR)
    except CellsegError as exc:
        print(f"The headless demo failed: {exc}", file=sys.stderr)
        return 1
    out_dir = Path(result.get("out_dir", DEMO_DIR)).resolve()
    print(f"Demo done: results in {out_dir}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parse(argv)
    if has_display():
        return _run_gui(args.screenshot)
    if args.screenshot is not None:
        print("No display found: a screenshot needs one (try xvfb-run -a).", file=sys.stderr)
        return 2
    return _run_headless()


if __name__ == "__main__":
    raise SystemExit(main())
