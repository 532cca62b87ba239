"""The "Batch segment folder…" dock: a real run with a tiny model, errors, cancel, resume."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile
from napari.layers import Image, Labels

from napari_cellseg._napari import batch_widget as bw
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.batch_widget import BatchWidget
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET

pytestmark = pytest.mark.gui

RUN_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny CPU models run much faster on a shared machine with one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), path)
    return path


@pytest.fixture
def errors_shown(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(bw, "show_error", shown.append)
    return shown


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """The three sample images and one text file named like a TIFF."""
    folder = tmp_path / "images"
    folder.mkdir()
    for image in sorted((sample_data_dir() / "images").iterdir()):
        shutil.copy(image, folder / image.name)
    (folder / "broken.tif").write_text("this is not an image\n")
    return folder


def make_widget(make_napari_viewer, qtbot, weights: Path, folder: Path, out: Path) -> BatchWidget:
    viewer = make_napari_viewer()
    session_for(viewer).weights = weights
    widget = BatchWidget(viewer)
    qtbot.addWidget(widget.root_native_widget)
    assert widget.weights.value == weights  # the session's weights by default
    widget.input.value = folder
    widget.output.value = out
    widget.device.value = "cpu"
    widget.tile_size.value = 64
    widget.overlap.value = 8
    return widget


def run_to_end(qtbot, widget: BatchWidget) -> None:
    widget.start.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def test_folder_with_a_broken_file(
    make_napari_viewer, qtbot, weights, samples, tmp_path, errors_shown
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    widget.start.clicked.emit()
    assert widget.running and widget.cancel.enabled and not widget.start.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert errors_shown == []
    summary = widget.summary
    assert summary is not None and not summary.cancelled
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 1)
    assert widget.summary_line.value.startswith("3 done, 0 skipped, 1 failed")
    assert widget.start.enabled and not widget.cancel.enabled
    assert widget.progress.value == widget.progress.max == 4
    assert widget.status.value.startswith("4/4 files")
    assert widget.updates <= 2 + 5 * summary.seconds  # throttled, not one per event
    table = widget.errors.value
    assert list(table["columns"]) == ["file", "reason"]
    assert len(table["data"]) == 1
    file, reason = table["data"][0]
    assert Path(file).name == "broken.tif" and reason

    assert widget.result.choices == ("dsb_brightfield.png", "dsb_fluorescence.png", "dsb_he.png")
    widget.result.value = "dsb_he.png"
    assert widget.open_result.enabled
    viewer = widget._viewer
    widget.open_result.clicked.emit()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=30_000)
    image, labels = viewer.layers
    assert isinstance(image, Image) and isinstance(labels, Labels)
    assert image.name == "dsb_he" and labels.name == "dsb_he · labels"
    expected = tifffile.imread(tmp_path / "out" / "dsb_he_labels.tif")
    np.testing.assert_array_equal(labels.data, expected)
    assert image.data.shape[:2] == labels.data.shape == (256, 320)


def test_cancel_keeps_a_consistent_state_and_rerun_resumes(
    make_napari_viewer, qtbot, weights, tmp_path, errors_shown
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    n_files = 40
    for i in range(n_files):
        tifffile.imwrite(folder / f"img_{i:02d}.tif", rng.integers(0, 255, (128, 128), np.uint8))
    out = tmp_path / "out"
    widget = make_widget(make_napari_viewer, qtbot, weights, folder, out)
    widget.start_batch()

    def cancel_after_two(_event: object) -> None:
        if len(widget._results) >= 2:
            widget.cancel_batch()

    widget.worker.yielded.connect(cancel_after_two)
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert errors_shown == []
    first = widget.summary
    assert first is not None and first.cancelled
    assert 2 <= first.done < n_files and first.failed == 0
    assert widget.start.enabled and not widget.cancel.enabled
    assert "stopped" in widget.status.value and str(out) in widget.status.value
    assert len(list(out.glob("*_labels.tif"))) == first.done
    assert not list(out.rglob("*.tmp"))

    run_to_end(qtbot, widget)
    assert errors_shown == []
    second = widget.summary
    assert not second.cancelled
    assert (second.skipped, second.done, second.failed) == (first.done, n_files - first.done, 0)
    assert len(widget.result.choices) == n_files


def test_recipe_change_without_overwrite_shows_an_error(
    make_napari_viewer, qtbot, weights, samples, tmp_path, errors_shown
) -> None:
    (samples / "broken.tif").unlink()
    (samples / "dsb_brightfield.png").unlink()
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    run_to_end(qtbot, widget)
    assert errors_shown == [] and widget.summary.done == 2

    widget.tile_size.value = 96
    run_to_end(qtbot, widget)
    assert len(errors_shown) == 1
    assert "different recipe" in errors_shown[0] and "tile_size 64 -> 96" in errors_shown[0]
    assert widget.summary is None and widget.start.enabled
    assert "failed:" in widget.status.value

    widget.overwrite.value = True
    run_to_end(qtbot, widget)
    assert len(errors_shown) == 1 and widget.summary.done == 2


def test_field_errors_are_shown_not_raised(
    make_napari_viewer, qtbot, weights, samples, tmp_path, errors_shown
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    widget.overlap.value = 40  # not below half the tile size
    widget.start.clicked.emit()
    assert not widget.running and len(errors_shown) == 1 and "overlap 40" in errors_shown[0]
    widget.input.value = None
    widget.start.clicked.emit()
    assert errors_shown[-1] == "choose an input folder"


def test_weights_follow_the_session_until_picked(
    make_napari_viewer, qtbot, weights, samples, tmp_path
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    session = session_for(widget._viewer)
    other = tmp_path / "other.safetensors"
    session.weights = other
    assert widget.weights.value == other
    widget.weights.value = weights  # the user's choice is kept
    session.weights = tmp_path / "third.safetensors"
    assert widget.weights.value == weights
    assert widget.tile_size.value == 64 and not widget.workers.visible
    widget.show()
    widget.scheduler.value = "local"
    assert widget.workers.visible


def test_test_time_augmentation_reaches_the_batch(
    make_napari_viewer, qtbot, weights, samples, tmp_path
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    assert widget._batch_kwargs()["params"].tta == 1
    widget.tta.value = 4
    assert widget._batch_kwargs()["params"].tta == 4


def test_exports_reach_the_batch(make_napari_viewer, qtbot, weights, samples, tmp_path) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    assert widget._batch_kwargs()["exports"] == []
    widget.exports.export_geojson.value = True
    widget.exports.export_roi.value = True
    assert widget._batch_kwargs()["exports"] == ["geojson", "roi"]


def test_the_segment_tabs_thresholds_and_diameter_reach_the_batch(
    make_napari_viewer, qtbot, weights, samples, tmp_path
) -> None:
    from napari_cellseg._napari.segment_widget import SegmentWidget

    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    assert widget._batch_kwargs()["params"].post is None  # no Segment tab: the model's own
    assert widget.thresholds.value == "the model's own (its card)"
    segment = SegmentWidget(widget._viewer)
    qtbot.addWidget(segment.native)
    assert segment.weights_path == weights
    assert widget.diameter.diameter_mode.value == "model default"  # the Segment tab's is untouched
    assert widget._batch_kwargs()["params"].diameter is None
    segment.runner._options.thresholds["prob_threshold"].value = 0.7
    segment.runner._options.min_size.value = 9
    segment.diameter.mode.value = "value"
    segment.diameter.value.value = 33
    params = widget._batch_kwargs()["params"]
    assert params.post is not None
    assert params.post.prob_threshold == pytest.approx(0.7) and params.post.min_size == 9
    assert params.post == segment.runner._options.post_params(segment.model_card.post_params())
    assert params.diameter == 33.0
    assert widget.thresholds.value.startswith("Segment tab's: ")
    assert "prob_threshold 0.7" in widget.thresholds.value
    assert "score_threshold" not in widget.thresholds.value  # a U-Net's thresholds only
    segment.diameter.mode.value = "auto"
    assert widget._batch_kwargs()["params"].diameter == "auto"
    widget.weights.value = tmp_path / "other.safetensors"  # another model: its own thresholds
    assert widget._batch_kwargs()["params"].post is None
    assert widget.thresholds.value == "the model's own (its card)"


def test_the_channel_choice_reaches_the_batch_and_its_recipe(
    make_napari_viewer, qtbot, weights, tmp_path, errors_shown
) -> None:
    import json

    from napari_cellseg._napari.segment_widget import SegmentWidget

    folder = tmp_path / "two_channels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (2, 64, 80), np.uint8)  # CYX
    tifffile.imwrite(folder / "plain.tif", data)  # no axes: read as a z-stack by itself
    tifffile.imwrite(folder / "imagej.tif", data, imagej=True, metadata={"axes": "CYX"})
    out = tmp_path / "out"
    widget = make_widget(make_napari_viewer, qtbot, weights, folder, out)
    params = widget._batch_kwargs()["params"]
    assert (params.axes, params.channels) == (None, None)  # no Segment tab: as before
    assert widget.batch_signal.value is None and widget.file_axes.value == ""

    viewer = widget._viewer
    viewer.add_image(data, name="cells")
    segment = SegmentWidget(viewer)
    qtbot.addWidget(segment.native)
    segment.channels.signal.value = 1
    segment.channels.helper.value = 0
    assert widget.file_axes.value == "CYX"  # followed
    assert (widget.batch_signal.value, widget.batch_helper.value) == (1, 0)
    params = widget._batch_kwargs()["params"]
    assert (params.axes, params.channels) == ("CYX", (1, 0, 1))

    run_to_end(qtbot, widget)
    assert errors_shown == [] and (widget.summary.done, widget.summary.failed) == (2, 0)
    manifest = json.loads((out / "batch_manifest.json").read_text())
    recipe = manifest["recipe"]["params"]
    assert recipe["channels"] == [1, 0, 1] and recipe["axes"] == "CYX"
    run_to_end(qtbot, widget)  # the same choice: the recipe matches, both resume
    assert errors_shown == [] and widget.summary.skipped == 2

    widget.batch_helper.value = None
    widget.batch_signal.value = 5  # beyond the files' channels: each fails with one line
    widget.overwrite.value = True
    run_to_end(qtbot, widget)
    assert widget.summary.failed == 2
    reasons = [reason for _file, reason in widget.errors.value["data"]]
    assert all("channel index 5 is out of range" in r and "\n" not in r for r in reasons)

    widget.file_axes.value = "CQX"
    widget.start.clicked.emit()
    assert not widget.running and "file axes 'CQX'" in errors_shown[-1]


def disk_stack(planes: int = 3, size: int = 96) -> np.ndarray:
    """The same bright disks in every plane, a little noisier each plane."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    base = rng.integers(0, 20, (size, size)).astype(np.int16)
    for cy in range(12, size, 24):
        for cx in range(12, size, 24):
            base[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(6, 10) ** 2] = 200
    noisy = [np.clip(base + rng.integers(-8, 8, base.shape), 0, 255) for _ in range(planes)]
    return np.stack(noisy).astype(np.uint8)


def test_the_stack_options_stitch_and_link_and_enter_the_recipe(
    make_napari_viewer, qtbot, tmp_path, errors_shown
) -> None:
    import json

    import torch

    from napari_cellseg.labels.stitching import link_frames, stitch_planes

    torch.manual_seed(0)  # its own thresholds: several objects on these disks
    card = ModelCard.for_model("unet", TINY_UNET)
    card.postprocess = {"prob_threshold": 0.7, "min_size": 5}
    weights = save_weights(build_model("unet", **TINY_UNET), card, tmp_path / "w.safetensors")
    folder = tmp_path / "stacks"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", disk_stack(), photometric="minisblack")
    widget = make_widget(make_napari_viewer, qtbot, weights, folder, tmp_path / "plain")
    assert widget.stitch_iou.native.isHidden() and widget.z_spacing.native.isHidden()
    params = widget._batch_kwargs()["params"]
    assert not params.stitch_3d and not params.link_time and params.z_spacing is None
    assert widget.z_spacing.native.text() == "from each file"
    run_to_end(qtbot, widget)
    flat = tifffile.imread(tmp_path / "plain" / "stack_labels.tif")
    assert flat.shape == (3, 96, 96) and flat.max() > 0

    widget.joining.stitch_3d.value = True
    assert not widget.stitch_iou.native.isHidden() and not widget.z_spacing.native.isHidden()
    assert widget.max_gap.native.isHidden()
    widget.z_spacing.value = 2.0
    widget.output.value = tmp_path / "3d"
    run_to_end(qtbot, widget)
    assert errors_shown == [] and widget.summary.done == 1
    joined = tifffile.imread(tmp_path / "3d" / "stack_labels.tif")
    np.testing.assert_array_equal(joined, stitch_planes(flat.astype(np.int64), z_spacing=2.0))
    recipe = json.loads((tmp_path / "3d" / "batch_manifest.json").read_text())["recipe"]
    assert recipe["params"]["stitch_3d"] and recipe["params"]["z_spacing"] == 2.0
    assert "link_time" not in recipe["params"]  # off: left out (folders before it resume)
    widget.stitch_iou.value = 0.5  # another recipe: refused without "Replace…"
    run_to_end(qtbot, widget)
    assert "stitch_iou 0.25 -> 0.5" in errors_shown[-1]

    widget.joining.stitch_3d.value = False
    widget.joining.link_time.value = True
    assert not widget.max_gap.native.isHidden() and widget.z_spacing.native.isHidden()
    widget.max_gap.value = 0
    widget.file_axes.value = "TYX"  # the frames of a time-lapse
    widget.output.value = tmp_path / "linked"
    run_to_end(qtbot, widget)
    assert widget.summary.done == 1
    linked = tifffile.imread(tmp_path / "linked" / "stack_labels.tif")
    np.testing.assert_array_equal(linked, link_frames(flat.astype(np.int64), 0.5, max_gap=0))
    recipe = json.loads((tmp_path / "linked" / "batch_manifest.json").read_text())["recipe"]
    assert recipe["params"]["link_time"] and recipe["params"]["max_gap"] == 0
    assert "z_spacing" not in recipe["params"]


def test_the_backend_row_reaches_the_batch(
    make_napari_viewer, qtbot, weights, samples, tmp_path
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    assert widget._backend.value == "auto"
    assert widget._batch_kwargs()["params"].backend == "auto"
    widget._backend.value = "bf16"
    assert widget._batch_kwargs()["params"].backend == "bf16"


def test_a_batch_that_estimated_each_diameter_gives_the_median_to_set(
    make_napari_viewer, qtbot, weights, samples, tmp_path
) -> None:
    from napari_cellseg.batch import BatchSummary, FileResult
    from napari_cellseg.params import PredictParams

    widget = make_widget(make_napari_viewer, qtbot, weights, samples, tmp_path / "out")
    out = str(tmp_path / "out")
    summary = BatchSummary(done=3, skipped=1, failed=0, objects=9, seconds=1.0, errors=(), out=out)
    for i, size in enumerate((20.0, 24.4, 31.0, None)):
        status = "done" if size else "skipped"
        widget._on_event(
            FileResult(file=f"a{i}.png", rel=f"a{i}.png", status=status, diameter=size)
        )
    widget._estimating = True
    widget._show_summary(summary)
    assert "median 24 px (20–31); for alike images, Diameter 24 px" in widget._summary.value
    widget._estimating = False  # a diameter given (or known) for every image: nothing to add
    widget._show_summary(summary)
    assert "diameters estimated" not in widget._summary.value
    # the tiny model's card has no object size: its default is no estimate; auto is one
    assert not bw._estimates_each_image(weights, PredictParams())
    assert bw._estimates_each_image(weights, PredictParams(diameter="auto"))
    assert not bw._estimates_each_image(tmp_path / "missing.safetensors", PredictParams())
