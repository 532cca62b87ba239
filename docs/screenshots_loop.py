"""Take the user guide's screenshots of the human-in-the-loop round (Correct next, Recipe).

Run from the repository root (needs a display; Xvfb is enough)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_loop.py

It reuses the viewer and helpers of ``docs/screenshots.py`` (napari with the fluorescence
sample and the "Cell segmentation" dock, the bundled demo U-Net), then:

1. ranks a copy of the sample images with the Correct tab's **Rank folder…**
   (``guide_3_correct_next.png``);
2. double-clicks the top-ranked image and presses **Next doubtful object**
   (``guide_3_next_doubtful.png``);
3. sets **Checked** to "drawn rectangles", draws a rectangle around that object in the
   *checked region* layer and adds the image to a training set (``guide_3_checked_region.png``);
4. shows the Fine-tune tab with its **Recipe** row, nothing trained (``guide_5_recipe.png``).

``--only NAME ...`` saves only the named ones (every step still runs). Everything else goes
to a temporary folder, removed at the end (``--work DIR`` keeps it). Takes about a minute
on two CPU cores (the ranking segments each image four times).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import ROOT, Guide, click, finish, pump, wait_until, work_folder

SAMPLE_IMAGES = ROOT / "sample_data" / "images"
DOCK_WIDTH = 780  # wide enough for a ranked line with its reason


def camera_centre(viewer) -> tuple[float, float]:
    """The (Y, X) the view is centred on."""
    from napari_cellseg._napari._correct_helpers import camera

    return tuple(float(v) for v in camera(viewer).center[-2:])


def view_box(viewer, centre: tuple[float, float], size: float) -> None:
    """Centre the view on ``centre`` (data Y, X) showing about ``size`` pixels across."""
    from napari_cellseg._napari._correct_helpers import camera

    cam = camera(viewer)
    cam.center = centre
    cam.zoom = min(viewer.canvas.size) / size
    pump(5)


def scroll_to(widget, fraction: float) -> None:
    """Scroll a tab's scroll area (if it has one) to ``fraction`` (0 top, 1 bottom)."""
    native = widget.root_native_widget
    if hasattr(native, "verticalScrollBar"):
        bar = native.verticalScrollBar()
        bar.setValue(round(fraction * bar.maximum()))
    pump(10)


class LoopGuide(Guide):
    """The Correct next panel, the checked region and the Recipe row."""

    def widen_dock(self) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QDockWidget

        dock = getattr(self.dock, "native", self.dock)
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        self.viewer.window._qt_window.resizeDocks([dock], [DOCK_WIDTH], Qt.Horizontal)
        pump(10)

    def step_rank(self) -> None:
        correct = self.dock.correct
        panel = correct.correct_next
        self.dismiss_notifications()
        self.widen_dock()
        self.tab(1)
        folder = self.work / "to_correct"
        shutil.copytree(SAMPLE_IMAGES, folder)
        panel.rank_folder(folder)  # what "Rank folder…" runs once the folder is chosen
        waited = wait_until(lambda: not panel.running, "ranking")
        print(f"  ranked in {waited:.0f} s: {panel.status.value}", flush=True)
        for row in range(panel.list.count()):
            print(f"    {panel.list.item(row).text()}", flush=True)
        scroll_to(correct, 1.0)
        self.shot("guide_3_correct_next")

    def step_next_doubtful(self) -> None:
        correct = self.dock.correct
        panel = correct.correct_next
        item = panel.list.item(0)
        panel.list.itemDoubleClicked.emit(item)  # the double-click
        pump(10)
        labels = self.viewer.layers.selection.active
        print(f"  opened {labels.name}: {panel.object_info.value}", flush=True)
        self.image_name = panel.ranked[0].path.stem
        self.show_only(self.image_name, labels.name)
        labels.opacity = 0.5
        self.viewer.reset_view()
        click(panel.next_button)
        wait_until(lambda: not panel.running, "next doubtful object")
        print(f"  next: {panel.object_info.value}", flush=True)
        self.doubt_labels = labels
        # the button centred the view on the object; zoom in so that it stands out
        view_box(self.viewer, tuple(camera_centre(self.viewer)), 160)
        scroll_to(correct, 1.0)
        self.shot("guide_3_next_doubtful", reset_view=False)

    def step_checked_region(self) -> None:
        from napari_cellseg._napari._correct_helpers import REGION_LAYER

        correct = self.dock.correct
        labels = self.doubt_labels
        data = np.asarray(labels.data)
        self.dismiss_notifications()
        correct.labels_layer.value = labels
        obj = labels.selected_label
        ys, xs = np.nonzero(data == obj)
        pad = 40
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad, data.shape[0] - 1)
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad, data.shape[1] - 1)
        correct.checked.value = "drawn rectangles"
        pump(10)
        shapes = self.layer(REGION_LAYER)
        shapes.add_rectangles(np.array([[y0, x0], [y1, x1]], float))
        print(f"  rectangle around object {obj}: y {y0}-{y1}, x {x0}-{x1}", flush=True)
        correct.folder.value = self.work / "training_set"
        self.dismiss_notifications()
        click(correct.add_button)
        pump(20)
        self.dismiss_notifications()  # its text names the temporary folder
        self.viewer.layers.selection.active = shapes
        view_box(self.viewer, ((y0 + y1) / 2, (x0 + x1) / 2), 2.2 * max(y1 - y0, x1 - x0))
        scroll_to(correct, 0.5)
        self.shot("guide_3_checked_region", reset_view=False)

    def step_recipe(self) -> None:
        ft = self.dock.finetune
        self.dismiss_notifications()
        self.tab(2)
        print(
            f"  recipe {ft.recipe.value}, stop after {ft.stop_by.value} "
            f"{ft.minutes.value}, patch {ft.patch_size.value}",
            flush=True,
        )
        scroll_to(ft, 0.0)
        self.shot("guide_5_recipe", reset_view=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="keep the copied images etc. here")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="save only these screenshots (all steps run)"
    )
    args = parser.parse_args(argv)
    work = work_folder(args.work, "cellseg-loop-")
    print(f"working folder: {work}", flush=True)
    guide = LoopGuide(work, only=set(args.only) if args.only else None)
    start = time.monotonic()
    for step in (
        guide.step_rank,
        guide.step_next_doubtful,
        guide.step_checked_region,
        guide.step_recipe,
    ):
        print(f"{step.__name__} …", flush=True)
        step()
    print(f"screenshots taken in {time.monotonic() - start:.0f} s", flush=True)
    return finish(guide, work, keep=args.work is not None)


if __name__ == "__main__":
    sys.exit(main())
