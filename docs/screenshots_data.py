"""Take the user guide's screenshots of the data features (channels, z-stacks, time-lapses).

Run from the repository root (needs a display; Xvfb is enough)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_data.py

It reuses the viewer and helpers of ``docs/screenshots.py`` (napari with the fluorescence
sample and the "Cell segmentation" dock, the bundled demo U-Net), then:

1. builds a two-channel CYX image (the fluorescence sample as nuclei channel, a blurred
   copy as "cytoplasm"), sets the Channels rows and segments it (``guide_2_channels.png``);
2. builds a small z-stack (8 shifted copies of a crop of the sample), segments all planes
   with **Stitch 3D** ticked and shows the 3D objects (``guide_2_zstack.png``);
3. builds a short time-lapse of moving discs, segments all frames with **Link over time**
   ticked (``guide_2_timelapse.png``);
4. segments the fluorescence sample and exports it from the Correct tab's **Export as** row
   as QuPath GeoJSON (``guide_9_export.png``);
5. writes a small pyramidal OME-TIFF (the H&E sample tiled 2 × 2, three levels), segments it
   with ``cellseg predict --labels-format zarr`` and opens both through the plugin's reader
   as multiscale layers (``guide_11_slide.png``);
6. writes that z-stack and that time-lapse as ImageJ TIFFs to a folder and segments it in
   the Batch dialog with **Stitch 3D** and **Link over time** ticked, opening the movie's
   result (``guide_2_batch_stacks.png``);
7. exports the demo U-Net with the Segment tab's **Export model (bioimage.io)…** and picks
   the package as the weights (``guide_10_bioimageio.png``).

Steps 6 and 7 run before step 5, which replaces the viewer's layers.
``--only NAME ...`` runs only the steps of the named screenshots. Napari-cellseg's settings
go to a temporary folder, removed at the end (``--work DIR`` keeps it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import (
    DEMO_WEIGHTS,
    FLUO,
    PLUGIN,
    ROOT,
    Guide,
    click,
    finish,
    pump,
    wait_until,
    work_folder,
)

SAMPLES = ROOT / "sample_data" / "images"


def fluorescence(guide: Guide) -> np.ndarray:
    """The fluorescence sample as a 2D float array."""
    data = np.asarray(guide.layer(FLUO).data, dtype=np.float32)
    return data.mean(axis=-1) if data.ndim == 3 else data


def moving_discs(frames: int = 6, size: int = 256, seed: int = 0) -> np.ndarray:
    """A TYX time-lapse of bright discs drifting a few pixels per frame."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    n = 9  # on a 3 × 3 grid, far enough apart never to touch
    grid = np.stack(np.meshgrid([48, 128, 208], [48, 128, 208], indexing="ij"), -1)
    start = grid.reshape(-1, 2) + rng.uniform(-8, 8, (n, 2))
    step = rng.uniform(-3, 3, (n, 2))
    radius = rng.uniform(9, 14, n)
    yy, xx = np.mgrid[:size, :size]
    movie = np.zeros((frames, size, size), np.float32)
    for t in range(frames):
        for (y, x), (dy, dx), r in zip(start, step, radius, strict=True):
            cy, cx = y + t * dy, x + t * dx
            movie[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
        movie[t] = ndi.gaussian_filter(movie[t], 1.5) + rng.normal(10, 3, (size, size))
    return np.clip(movie, 0, 255).astype(np.uint8)


class DataGuide(Guide):
    """Channels, z-stack and time-lapse screenshots."""

    def run_segment(self, layer) -> str:
        seg = self.dock.segment
        click(seg.run_button)
        waited = wait_until(lambda: not seg.running, "segmentation")
        print(f"  segmented {layer.name!r} in {waited:.1f} s: {seg.status.value}", flush=True)
        return f"{layer.name} · {seg.model_card.name}"

    def step_channels(self) -> None:
        from scipy import ndimage as ndi

        seg = self.dock.segment
        self.dismiss_notifications()
        self.tab(0)
        nuclei = fluorescence(self)
        cyto = ndi.gaussian_filter(nuclei, 6) * 2.0
        data = np.stack([nuclei, np.clip(cyto, 0, 255)]).astype(np.uint8)
        layer = self.viewer.add_image(data, name="two channels", colormap="gray")
        pump(10)
        seg.image_layer.value = layer
        rows = seg.channels
        rows.axis.value = 0
        rows.signal.value = 0
        choices = [c[1] if isinstance(c, tuple) else c for c in rows.helper.choices]
        print(f"  helper choices: {rows.helper.choices}", flush=True)
        if 1 in choices:
            rows.helper.value = 1
        pump(10)
        print(f"  model inputs: {rows.inputs.value}", flush=True)
        name = self.run_segment(layer)
        self.show_only(layer.name, name)
        self.layer(name).opacity = 0.5
        self.viewer.layers.selection.active = self.layer(name)
        self.shot("guide_2_channels")
        self.viewer.layers.remove(name)
        self.viewer.layers.remove(layer.name)

    def step_zstack(self) -> None:
        seg = self.dock.segment
        opts = seg._options
        self.dismiss_notifications()
        self.tab(0)
        crop = fluorescence(self)[:192, :192]
        stack = np.stack([np.roll(crop, (z, z), axis=(0, 1)) for z in range(8)])
        layer = self.viewer.add_image(stack.astype(np.uint8), name="z-stack", colormap="gray")
        pump(10)
        seg.image_layer.value = layer
        opts.planes.value = "all"
        opts.stitch_3d.value = True
        opts.link_time.value = False
        pump(10)
        name = self.run_segment(layer)
        labels = self.layer(name)
        ids = [len(np.unique(p[p > 0])) for p in np.asarray(labels.data)]
        print(f"  objects per plane {ids}, in all {len(np.unique(labels.data)) - 1}", flush=True)
        self.show_only(name)
        self.viewer.layers.selection.active = labels
        self.viewer.dims.ndisplay = 3
        pump(10)
        self.viewer.reset_view()
        self.viewer.camera.angles = (-20, 30, 60)
        pump(10)
        self.shot("guide_2_zstack", reset_view=False)
        self.viewer.dims.ndisplay = 2
        opts.stitch_3d.value = False
        self.viewer.layers.remove(name)
        self.viewer.layers.remove(layer.name)

    def step_timelapse(self) -> None:
        seg = self.dock.segment
        opts = seg._options
        self.dismiss_notifications()
        self.tab(0)
        layer = self.viewer.add_image(moving_discs(), name="time-lapse", colormap="gray")
        pump(10)
        seg.image_layer.value = layer
        opts.planes.value = "all"
        opts.stitch_3d.value = False
        opts.link_time.value = True
        pump(10)
        name = self.run_segment(layer)
        labels = self.layer(name)
        for t, frame in enumerate(np.asarray(labels.data)):
            print(f"  frame {t}: ids {sorted(np.unique(frame[frame > 0]).tolist())}", flush=True)
        self.show_only(layer.name, name)
        labels.opacity = 0.6
        self.viewer.layers.selection.active = labels
        self.viewer.dims.set_current_step(0, 3)
        self.shot("guide_2_timelapse")

    def step_export(self) -> None:
        from screenshots import FLUO as image

        correct = self.dock.correct
        self.dismiss_notifications()
        self.dock.segment.image_layer.value = self.layer(image)
        name = self.run_segment(self.layer(image))
        self.show_only(image, name)
        self.layer(name).opacity = 0.5
        self.tab(1)
        correct.labels_layer.value = self.layer(name)
        correct.image_layer.value = self.layer(image)
        correct.export_format.value = "QuPath GeoJSON (.geojson)"
        pump(10)
        written = correct.export(self.work / "fluorescence_labels.geojson")
        print(f"  exported to {written}", flush=True)
        self.dismiss_notifications()  # its text names the temporary folder
        self.viewer.layers.selection.active = self.layer(name)
        self.shot("guide_9_export")

    def step_slide(self) -> None:
        import subprocess

        sys.path.insert(0, str(ROOT / "tests"))
        from slide_files import write_ome_pyramid

        self.dismiss_notifications()
        from skimage.io import imread

        he = np.asarray(imread(SAMPLES / "dsb_he.png"))[..., :3]
        tissue = np.concatenate([np.concatenate([he, he[:, ::-1]], 1)] * 2, 0)
        # no pixel size: the reader gives the labels store no scale, so they would not
        # line up with a slide that has one
        slide = write_ome_pyramid(self.work / "slide.ome.tif", tissue, n=3, pixel_um=None)
        out = self.work / "labels"
        cmd = [sys.executable, "-m", "napari_cellseg.cli", "predict", str(slide), "--weights",
               str(DEMO_WEIGHTS), "--out", str(out), "--labels-format", "zarr"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(f"  {tissue.shape}: {done.stdout.strip()}", flush=True)
        for layer in list(self.viewer.layers):
            self.viewer.layers.remove(layer)
        self.viewer.open(str(slide), plugin=PLUGIN)
        self.viewer.open(str(out / "slide_labels.ome.zarr"), plugin=PLUGIN)
        pump(10)
        for layer in self.viewer.layers:
            print(f"  {layer.name}: multiscale {layer.multiscale}, {len(layer.data)} levels "
                  f"{[tuple(d.shape) for d in layer.data]}", flush=True)  # fmt: skip
        self.viewer.layers[-1].opacity = 0.5
        self.tab(0)
        self.dismiss_notifications()
        self.shot("guide_11_slide")

    def step_batch_stacks(self) -> None:
        """The Batch dialog with Stitch 3D and Link over time over a z-stack and a movie."""
        import tifffile

        self.dismiss_notifications()
        folder = self.work / "stacks"
        folder.mkdir(parents=True, exist_ok=True)
        crop = fluorescence(self)[:192, :192]
        zstack = np.stack([np.roll(crop, (z, z), axis=(0, 1)) for z in range(8)])
        tifffile.imwrite(
            folder / "zstack.tif", zstack.astype(np.uint8), imagej=True,
            metadata={"axes": "ZYX", "spacing": 2.0}, resolution=(1.0, 1.0),
        )  # fmt: skip
        movie = moving_discs()
        tifffile.imwrite(folder / "movie.tif", movie, imagej=True, metadata={"axes": "TYX"})
        main = qt_dock_of(self.dock)
        main.hide()  # room for the dialog; shown again at the end
        dock, batch = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Batch segment folder…")
        batch = batch.cellseg_widget
        batch.input.value = folder
        batch.weights.value = DEMO_WEIGHTS
        batch.device.value = "cpu"
        batch.joining.stitch_3d.value = True
        batch.joining.link_time.value = True
        pump(10)
        click(batch.start)
        waited = wait_until(lambda: not batch.running, "batch")
        print(f"  batch in {waited:.0f} s: {batch.summary_line.value}", flush=True)
        batch.result.value = "movie.tif"
        before = len(self.viewer.layers)
        click(batch.open_result)
        wait_until(lambda: len(self.viewer.layers) == before + 2, "opening a batch result")
        labels = self.layer("movie · labels")
        for t, frame in enumerate(np.asarray(labels.data)):
            print(f"  frame {t}: ids {sorted(np.unique(frame[frame > 0]).tolist())}", flush=True)
        self.show_only("movie", "movie · labels")
        self.viewer.dims.set_current_step(0, 3)
        self.dismiss_notifications()
        self.shot("guide_2_batch_stacks")
        self.viewer.window.remove_dock_widget(dock)
        for name in ("movie", "movie · labels"):
            self.viewer.layers.remove(name)
        self.show_only(FLUO)
        main.show()
        pump(10)

    def step_model_export(self) -> None:
        """The Segment tab's Export model (bioimage.io)…, then the package as the weights."""
        seg = self.dock.segment
        self.dismiss_notifications()
        self.tab(0)
        seg.image_layer.value = self.layer(FLUO)
        seg._weights.value = DEMO_WEIGHTS
        pump(10)
        export = seg.model_export
        export.export(self.work / "unet_dsb_bioimageio.zip")  # what the save dialog returns
        waited = wait_until(lambda: not export.running, "bioimage.io export")
        print(f"  exported in {waited:.0f} s: {export.status.value}", flush=True)
        seg._weights.value = export.written  # the picker takes the package itself
        pump(10)
        print(f"  card of the package: {seg.model_card.name}", flush=True)
        self.show_only(FLUO)
        self.viewer.layers.selection.active = self.layer(FLUO)
        self.dismiss_notifications()
        self.shot("guide_10_bioimageio")
        seg._weights.value = DEMO_WEIGHTS


def qt_dock_of(widget):
    """The QDockWidget that holds ``widget`` (to hide it for a while)."""
    from qtpy.QtWidgets import QDockWidget

    native = getattr(widget, "native", widget)
    while native is not None and not isinstance(native, QDockWidget):
        native = native.parentWidget()
    return native


STEPS = {
    "guide_2_channels": "step_channels",
    "guide_2_zstack": "step_zstack",
    "guide_2_timelapse": "step_timelapse",
    "guide_9_export": "step_export",
    "guide_2_batch_stacks": "step_batch_stacks",
    "guide_10_bioimageio": "step_model_export",
    "guide_11_slide": "step_slide",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="keep napari-cellseg's settings here")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(STEPS))
    args = parser.parse_args(argv)
    work = work_folder(args.work, "cellseg-data-")
    names = args.only or list(STEPS)
    guide = DataGuide(work, only=set(names))
    start = time.monotonic()
    for name in names:
        print(f"{STEPS[name]} …", flush=True)
        getattr(guide, STEPS[name])()
    print(f"screenshots taken in {time.monotonic() - start:.0f} s", flush=True)
    return finish(guide, work, keep=args.work is not None)


if __name__ == "__main__":
    sys.exit(main())
