"""Re-take every screenshot of docs/user-guide.md by driving the dock like a user would.

Run from the repository root (needs a display; Xvfb is enough)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py

It opens napari with the fluorescence sample and the "Cell segmentation" dock, segments with
the bundled demo U-Net, corrects the result (delete with 'd', merge when the model cut a
nucleus in two, split with seeds), adds it to a training set, fine-tunes for two tiny epochs
on the CPU, evaluates and compares models, measures the corrected objects, and saves
``docs/images/guide_<n>_<step>.png`` (and ``guide_measure.png``) after each step;
``--only NAME ...`` saves only the named ones (every step still runs). The training set, the
new weights and napari-cellseg's settings go to a temporary folder, removed at the end
(``--work DIR`` keeps them there). Takes one to two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PLUGIN = "napari-cellseg"
WINDOW_SIZE = (1600, 1000)
ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
DEMO_WEIGHTS = ROOT / "sample_data" / "models" / "unet_dsb.safetensors"
# The sample layers' names (napari_cellseg.io.samples titles).
FLUO = "Fluorescent nuclei (DSB 2018)"
BRIGHT = "Brightfield cells with nuclei (DSB 2018)"
GT = " · ground truth"


def pump(times: int = 5, pause: float = 0.02) -> None:
    """Let Qt process events (layouts, paints, queued worker signals)."""
    from qtpy.QtWidgets import QApplication

    for _ in range(times):
        QApplication.processEvents()
        time.sleep(pause)


def wait_until(done: Callable[[], bool], what: str, timeout: float = 600.0) -> float:
    """Process events until ``done()``; returns the seconds waited."""
    start = time.monotonic()
    while not done():
        pump(1, 0.05)
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
    pump()
    return time.monotonic() - start


def click(button) -> None:
    """Press a magicgui PushButton the way a mouse click does."""
    button.native.click()
    pump()


def largest_split_candidate(pred: np.ndarray, gt: np.ndarray) -> tuple[int, list[tuple]]:
    """A predicted object covering two ground-truth nuclei, with a seed in each.

    Falls back to the largest predicted object split along its longest extent.
    """
    from scipy import ndimage as ndi

    best: tuple[int, int, list[tuple]] | None = None
    for obj in np.unique(pred[pred > 0]):
        mask = pred == obj
        ids, counts = np.unique(gt[mask], return_counts=True)
        inside = [i for i, c in zip(ids, counts, strict=True) if i and c >= 0.5 * (gt == i).sum()]
        if len(inside) >= 2:
            seeds = []
            for i in inside[:2]:
                core = mask & (gt == i)
                dist = ndi.distance_transform_edt(core)
                seeds.append(tuple(float(v) for v in np.unravel_index(np.argmax(dist), dist.shape)))
            area = int(mask.sum())
            if best is None or area > best[1]:
                best = (int(obj), area, seeds)
    if best is not None:
        return best[0], best[2]
    obj = int(np.argmax(np.bincount(pred.ravel())[1:]) + 1)
    ys, xs = np.nonzero(ndi.binary_erosion(pred == obj, iterations=2))
    axis = ys if np.ptp(ys) >= np.ptp(xs) else xs
    lo, hi = np.argmin(axis), np.argmax(axis)
    return obj, [(float(ys[lo]), float(xs[lo])), (float(ys[hi]), float(xs[hi]))]


def false_positive(pred: np.ndarray, gt: np.ndarray) -> int | None:
    """The largest predicted object that touches no ground-truth nucleus."""
    best, area = None, 0
    for obj in np.unique(pred[pred > 0]):
        mask = pred == obj
        if not gt[mask].any() and mask.sum() > area:
            best, area = int(obj), int(mask.sum())
    return best


def over_split(pred: np.ndarray, gt: np.ndarray, skip: int) -> list[int]:
    """Two predicted objects lying in the same ground-truth nucleus (to merge), or []."""
    for nucleus in np.unique(gt[gt > 0]):
        mask = gt == nucleus
        ids, counts = np.unique(pred[mask], return_counts=True)
        parts = [
            int(i)
            for i, c in zip(ids, counts, strict=True)
            if i and i != skip and c >= 0.6 * (pred == i).sum()
        ]
        if len(parts) >= 2:
            return parts[:2]
    return []


class Guide:
    """The viewer, the dock and the steps of the user guide."""

    def __init__(self, work: Path, only: set[str] | None = None) -> None:
        import napari

        import napari_cellseg._napari  # noqa: F401  (keeps triton out before OpenGL starts)

        self.work, self.only = work, only
        self.training_set = work / "training_set"
        self.viewer = napari.Viewer(title="napari-cellseg")
        self.viewer.window._qt_window.resize(*WINDOW_SIZE)
        self.viewer.open_sample(PLUGIN, "dsb_fluorescence")
        _, self.dock = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Cell segmentation")
        self.viewer.window._qt_window.resize(*WINDOW_SIZE)
        pump(10)
        self.new_weights: Path | None = None

    # -- helpers ----------------------------------------------------------------------------
    def layer(self, name: str):
        return self.viewer.layers[name]

    def show_only(self, *names: str) -> None:
        for layer in self.viewer.layers:
            layer.visible = layer.name in names

    def tab(self, index: int) -> None:
        self.dock.tabs.setCurrentIndex(index)
        pump()

    def shot(self, name: str, *, reset_view: bool = True) -> Path:
        self.viewer.window._qt_window.resize(*WINDOW_SIZE)
        pump(10)
        if reset_view:
            self.viewer.reset_view()
        pump(10)
        path = IMAGES / f"{name}.png"
        if self.only is not None and name not in self.only:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.viewer.screenshot(str(path), canvas_only=False)
        print(f"saved {path.relative_to(ROOT)}", flush=True)
        return path

    def dismiss_notifications(self) -> None:
        """Close the toasts of earlier steps so each picture shows its own."""
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for widget in self.viewer.window._qt_window.findChildren(NapariQtNotification):
            widget.close()
        pump()

    def segment(self, image: str) -> str:
        seg = self.dock.segment
        self.tab(0)
        seg.image_layer.value = self.layer(image)
        click(seg.run_button)
        waited = wait_until(lambda: not seg.running, "segmentation")
        print(f"  segmented {image!r} in {waited:.1f} s: {seg.status.value}", flush=True)
        return f"{image} · {seg.model_card.name}"

    # -- the steps --------------------------------------------------------------------------
    def step1_open(self) -> None:
        seg = self.dock.segment
        assert seg.weights.value == DEMO_WEIGHTS.resolve(), seg.weights.value
        self.tab(0)
        self.shot("guide_1_open")

    def step2_segment(self) -> None:
        self.pred_name = self.segment(FLUO)
        self.layer(self.pred_name).opacity = 0.6
        self.show_only(FLUO, self.pred_name)
        self.viewer.layers.selection.active = self.layer(self.pred_name)
        self.shot("guide_2_segment")

    def step3_correct(self) -> None:
        from napari_cellseg._napari._correct_helpers import camera
        from napari_cellseg._napari.correct_widget import SEEDS_LAYER

        correct, viewer = self.dock.correct, self.viewer
        layer = self.layer(self.pred_name)
        gt = np.asarray(self.layer(FLUO + GT).data)
        pred = np.asarray(layer.data).copy()
        self.tab(1)
        assert correct.labels_layer.value is layer
        # 'd' over a false positive (no nucleus there)
        fp = false_positive(pred, gt)
        if fp is not None:
            ys, xs = np.nonzero(pred == fp)
            viewer.cursor.position = (float(ys.mean()), float(xs.mean()))
            correct.delete_under_cursor(layer)  # what the 'd' key runs
        # merge two pieces of one nucleus
        target, seeds = largest_split_candidate(pred, gt)
        pieces = over_split(pred, gt, skip=target)
        if pieces:
            correct.merge_ids.value = ", ".join(map(str, pieces))
            click(correct.merge_button)
        # split: the first click on "Split" adds the seeds layer; then two seeds are clicked
        click(correct.split_button)
        self.dismiss_notifications()
        points = self.layer(SEEDS_LAYER)
        points.data = np.array(seeds)
        viewer.layers.selection.active = points
        ys, xs = np.nonzero(pred == target)
        self.show_only(FLUO, self.pred_name, SEEDS_LAYER)
        centre = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2)
        self.viewer.reset_view()
        cam = camera(viewer)
        cam.center = centre
        cam.zoom = cam.zoom * 3
        print(f"  deleted {fp}, merged {pieces}, seeds on {target}: {seeds}", flush=True)
        self.shot("guide_3_correct_seeds", reset_view=False)
        click(correct.split_button)
        print(f"  edited ids: {correct.edited_info.value}", flush=True)
        layer.selected_label = int(np.asarray(layer.data).max())
        viewer.layers.selection.active = layer
        self.shot("guide_3_correct", reset_view=False)

    def step4_add(self) -> None:
        correct = self.dock.correct
        self.dismiss_notifications()
        correct.folder.value = self.training_set
        click(correct.add_button)
        pump(20)
        self.shot("guide_4_training_set", reset_view=False)
        # A second image for the training set (fine-tuning keeps one image for validation):
        # the brightfield sample with its ground truth, added the same way, then closed.
        self.viewer.open_sample(PLUGIN, "dsb_brightfield")
        correct.labels_layer.value = self.layer(BRIGHT + GT)
        assert correct.image_layer.value is self.layer(BRIGHT)
        click(correct.add_button)
        for name in (BRIGHT + GT, BRIGHT):
            self.viewer.layers.remove(name)
        correct.labels_layer.value = self.layer(self.pred_name)
        self.viewer.layers.selection.active = self.layer(self.pred_name)
        print(f"  training set: {sorted(p.name for p in self.training_set.rglob('*.*'))}")

    def step5_finetune(self) -> None:
        from napari_cellseg._napari._finetune_monitor import LOSS_EPOCH

        ft = self.dock.finetune
        self.dismiss_notifications()
        self.tab(2)
        assert ft.training_set.value == self.training_set, ft.training_set.value
        assert ft.base_weights.value == DEMO_WEIGHTS.resolve(), ft.base_weights.value
        ft.epochs.value = 2
        ft.patch_size.value = 128
        ft.batch_size.value = 2
        ft.samples_per_epoch.value = 8
        ft.device.value = "cpu"
        ft.confirm = lambda message: False  # never block on the "worse model" question
        click(ft.start)
        # while it runs: the live curves after the first epoch, Stop enabled
        epoch_losses = ft.monitor.epochs[LOSS_EPOCH][0]
        wait_until(lambda: bool(epoch_losses) or not ft.running, "the first epoch")
        if ft.running:
            self.shot("guide_5_finetune_running")
        waited = wait_until(lambda: not ft.running, "fine-tuning")
        print(f"  fine-tuned in {waited:.0f} s: {ft.status.value}", flush=True)
        print(f"  verdict: {ft.verdict.value}", flush=True)
        if ft.result is None:
            raise RuntimeError(f"fine-tuning did not finish: {ft.status.value}")
        self.new_weights = Path(ft.result.weights_path)
        self.show_only(FLUO, self.pred_name)
        scroll = ft.root_native_widget
        scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
        pump(10)
        self.shot("guide_5_finetune")

    def step6_evaluate(self) -> None:
        ev = self.dock.evaluate
        self.dismiss_notifications()
        # Evaluate: the (corrected) segmentation of the fluorescence sample vs its ground truth
        self.show_only(FLUO, self.pred_name)
        self.viewer.layers.selection.active = self.layer(self.pred_name)
        self.tab(3)
        ev.prediction_layer.value = self.layer(self.pred_name)
        ev.ground_truth_layer.value = self.layer(FLUO + GT)
        click(ev.evaluate)
        wait_until(lambda: not ev.running, "evaluation")
        print(f"  evaluated: {ev.status.value}", flush=True)
        self.shot("guide_6_evaluate")

        # Compare models on an image neither was trained on: the brightfield sample (in the
        # demo model's validation split, and the fine-tune's validation image)
        self.viewer.open_sample(PLUGIN, "dsb_brightfield")
        ev.weights_a.value = DEMO_WEIGHTS
        ev.weights_b.value = self.new_weights
        ev.image_layer.value = self.layer(BRIGHT)
        ev.ground_truth_layer.value = self.layer(BRIGHT + GT)
        ev.device.value = "cpu"
        click(ev.compare)
        waited = wait_until(lambda: not ev.running, "comparison")
        print(f"  compared in {waited:.0f} s: {ev.status.value}", flush=True)
        names = [ly.name for ly in self.viewer.layers if ly.name.startswith(BRIGHT + " · ")]
        compared = [n for n in names if " · A: " in n or " · B: " in n]
        for name in compared:
            self.layer(name).contour = 2  # outlines: both results stay visible
        self.show_only(BRIGHT, *compared)
        self.viewer.layers.selection.active = self.layer(compared[-1])
        ev.prediction_layer.value = self.layer(compared[0])  # the pickers show one image's layers
        self.shot("guide_6_compare")

        # Tune model A's thresholds on the same labelled image (the demo U-Net)
        click(ev.tune)
        waited = wait_until(lambda: not ev.running, "tuning")
        print(f"  tuned in {waited:.0f} s: {ev.status.value}", flush=True)
        self.shot("guide_6_tune")

    def step6_measure(self) -> None:
        """The Measure tab on the corrected fluorescence segmentation, saved as CSV."""
        self.dismiss_notifications()
        measure = self.dock.measure
        for layer in [ly for ly in self.viewer.layers if ly.name.startswith(BRIGHT)]:
            self.viewer.layers.remove(layer)  # the view fits the fluorescence image again
        self.show_only(FLUO, self.pred_name)
        self.viewer.layers.selection.active = self.layer(self.pred_name)
        self.tab(4)
        measure.labels_layer.value = self.layer(self.pred_name)
        click(measure.measure_button)
        wait_until(lambda: not measure.running, "measuring")
        measure.csv_path.value = self.work / "fluorescence_measurements.csv"
        click(measure.save_button)
        print(f"  measured: {measure.status.value}", flush=True)
        self.shot("guide_measure")

    def step6_backend(self) -> None:
        """The Segment tab with the int8 backend (after the loop's steps: a new layer)."""
        options = self.dock.segment.runner._options
        options.backend.value = "int8"
        self.dismiss_notifications()
        self.segment(FLUO)
        new = self.viewer.layers[-1]  # beside the corrected layer of the same name
        self.show_only(FLUO, new.name)
        self.viewer.layers.selection.active = new
        self.dismiss_notifications()
        self.shot("segment_backend_int8")
        options.backend.value = "auto"

    def step7_batch(self) -> None:
        """The Batch dialog on the sample images: augmented ×4, measured, one result opened."""
        self.dismiss_notifications()
        self.viewer.window.remove_dock_widget(self.dock)  # the last step: room for the dialog
        _, dock = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Batch segment folder…")
        batch = dock.cellseg_widget
        images = self.work / "batch_input"
        shutil.copytree(ROOT / "sample_data" / "images", images)
        batch.input.value = images
        batch.weights.value = DEMO_WEIGHTS
        batch.device.value = "cpu"
        batch.tta.value = 4
        batch.measure.value = True
        click(batch.start)
        waited = wait_until(lambda: not batch.running, "batch")
        print(f"  batch in {waited:.0f} s: {batch.summary.line()}", flush=True)
        batch.result.value = "dsb_he.png"
        before = len(self.viewer.layers)
        click(batch.open_result)
        wait_until(lambda: len(self.viewer.layers) == before + 2, "opening a batch result")
        self.show_only("dsb_he", "dsb_he · labels")
        self.shot("guide_7_batch")


def work_folder(given: Path | None, prefix: str) -> Path:
    """The folder for the run's files, ``given`` or a new temporary one; napari-cellseg's
    settings start fresh there (no recent files: the bundled demo weights are preselected)
    and nothing is downloaded."""
    work = given or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["NAPARI_CELLSEG_CONFIG_DIR"] = str(work / "config")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return work


def finish(guide: Guide, work: Path, keep: bool) -> int:
    """Close the viewer and remove the work folder unless it was asked for (``keep``)."""
    guide.viewer.close()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="keep the training set etc. here")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="save only these screenshots (all steps run)"
    )
    args = parser.parse_args(argv)
    work = work_folder(args.work, "cellseg-guide-")
    print(f"working folder: {work}", flush=True)
    guide = Guide(work, only=set(args.only) if args.only else None)
    start = time.monotonic()
    for step in (
        guide.step1_open,
        guide.step2_segment,
        guide.step3_correct,
        guide.step4_add,
        guide.step5_finetune,
        guide.step6_evaluate,
        guide.step6_measure,
        guide.step6_backend,
        guide.step7_batch,
    ):
        print(f"{step.__name__} …", flush=True)
        step()
    print(f"all screenshots taken in {time.monotonic() - start:.0f} s", flush=True)
    return finish(guide, work, keep=args.work is not None)


if __name__ == "__main__":
    sys.exit(main())
