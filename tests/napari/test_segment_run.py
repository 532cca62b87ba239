"""The Segment dock runs tiny random models: layers, progress, re-apply, cancel, errors, stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Image, Labels, Shapes
from qtpy.QtWidgets import QApplication

from napari_cellseg import models
from napari_cellseg._napari import _segment_jobs
from napari_cellseg._napari import segment_widget as sw
from napari_cellseg._napari._sample_data import load_sample
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.segment_widget import SegmentWidget
from napari_cellseg.inference import api
from napari_cellseg.inference import blocks as predict_blocks
from napari_cellseg.inference.model_runner import ModelRunner
from napari_cellseg.models import ModelCard, build_model, save_weights
from napari_cellseg.params import BlockOptions
from tiny_models import TINY_MASKRCNN as MRCNN_ARGS
from tiny_models import TINY_UNET as UNET_ARGS

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    unet = build_model("unet", **UNET_ARGS)
    wrong_card = ModelCard.for_model("unet", {**UNET_ARGS, "encoder_name": "resnet34"})
    return {
        "unet": save_weights(
            unet, ModelCard.for_model("unet", UNET_ARGS), folder / "u.safetensors"
        ),
        "maskrcnn": save_weights(
            build_model("maskrcnn", **MRCNN_ARGS),
            ModelCard.for_model("maskrcnn", MRCNN_ARGS),
            folder / "m.safetensors",
        ),
        "mismatch": save_weights(unet, wrong_card, folder / "wrong_card.safetensors"),
    }


@pytest.fixture(autouse=True)
def _no_bundled_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "list_bundled_weights", list)


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(sw, "show_error", shown.append)
    return shown


def add_sample(viewer, key: str = "dsb_fluorescence") -> Image:
    data, kwargs, _ = load_sample(key)[0]
    return viewer.add_image(data, **kwargs)


def make_widget(viewer, qtbot, weights: Path) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    widget.weights.value = weights
    widget.tile_size.value = 128
    widget.overlap.value = 16
    return widget


def run_to_end(widget: SegmentWidget, qtbot) -> object:
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return worker


def labels_named(viewer, name: str) -> list[Labels]:
    return [ly for ly in viewer.layers if ly.name == name and isinstance(ly, Labels)]


def test_unet_run_adds_labels_and_probability(make_napari_viewer, qtbot, weight_files) -> None:
    viewer = make_napari_viewer()
    image = add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    assert not widget.prob_threshold.native.isHidden()
    assert widget.score_threshold.native.isHidden() and widget.boxes.native.isHidden()
    assert not widget.planes.enabled  # a 2-D image has one plane
    widget.probabilities.value = True

    worker = widget.run()
    assert worker is not None
    assert not widget.run_button.enabled and widget.cancel_button.enabled
    assert widget.run() is None  # a second run waits for the first
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    name = f"{image.name} · {widget.model_card.name}"
    (layer,) = labels_named(viewer, name)
    assert layer.data.shape == image.data.shape
    assert layer.data.dtype in (np.uint16, np.uint32)
    table = layer.metadata["table"]
    assert {"label", "area", "plane", "bbox_y0"} <= set(table)
    assert len(table["label"]) == widget.last_prediction.n_objects
    assert widget.progress.value == widget.progress.max
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert "objects" in widget.status.value
    assert f"({widget.last_prediction.backend})" in widget.status.value  # what ran the network
    assert session_for(viewer).predictions[name] is widget.last_prediction
    assert session_for(viewer).weights == weight_files["unet"].resolve()
    probability = viewer.layers[f"{name} · probability"]
    assert isinstance(probability, Image) and probability.data.shape == image.data.shape

    run_to_end(widget, qtbot)  # a re-run replaces the data, no second layer
    assert len(labels_named(viewer, name)) == 1
    assert len(viewer.layers) == 3


def test_maskrcnn_boxes_layer(make_napari_viewer, qtbot, weight_files) -> None:
    viewer = make_napari_viewer()
    image = add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["maskrcnn"])
    assert widget.prob_threshold.native.isHidden() and widget.probabilities.native.isHidden()
    assert not widget.score_threshold.native.isHidden()
    assert not widget.nms_iou.native.isHidden() and not widget.boxes.native.isHidden()
    widget.tile_size.value = 256
    widget.score_threshold.value = 0.05
    widget.boxes.value = True
    run_to_end(widget, qtbot)

    name = f"{image.name} · {widget.model_card.name}"
    (labels,) = labels_named(viewer, name)
    assert labels.data.shape == image.data.shape
    boxes = viewer.layers[f"{name} · boxes"]
    assert isinstance(boxes, Shapes)
    n = widget.last_prediction.n_objects
    assert n > 0 and len(boxes.data) == n
    assert set(boxes.shape_type) == {"rectangle"}
    np.testing.assert_allclose(boxes.features["score"], labels.metadata["table"]["score"])

    widget.boxes.value = False  # unticking removes the boxes without running again
    assert f"{name} · boxes" not in viewer.layers


def test_threshold_change_reapplies_without_the_model(
    make_napari_viewer, qtbot, weight_files, monkeypatch
) -> None:
    viewer = make_napari_viewer()
    image = add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    run_to_end(widget, qtbot)
    layer = viewer.layers[f"{image.name} · {widget.model_card.name}"]
    before = layer.data.copy()

    calls = {"predict": 0, "network": 0, "reapply": 0}
    real_reapply = _segment_jobs.reapply

    def count(key, result=None):
        def spy(*args, **kwargs):
            calls[key] += 1
            return result(*args, **kwargs) if result else None

        return spy

    monkeypatch.setattr(_segment_jobs, "iter_predict", count("predict"))
    monkeypatch.setattr(ModelRunner, "unet_probabilities", count("network"))
    monkeypatch.setattr(_segment_jobs, "reapply", count("reapply", real_reapply))

    for value in (0.45, 0.4, 0.9):  # quick changes are debounced into one re-apply
        widget.prob_threshold.value = value
    widget.min_size.value = 0
    qtbot.waitUntil(lambda: not widget.runner.reapplying, timeout=TIMEOUT_MS)

    post = widget.last_prediction.params.post
    assert (post.prob_threshold, post.min_size) == (0.9, 0)
    assert calls == {"predict": 0, "network": 0, "reapply": 1}
    assert not np.array_equal(layer.data, before)
    assert layer.metadata["table"] is widget.last_prediction.table
    assert session_for(viewer).predictions[layer.name] is widget.last_prediction
    assert "re-applied" in widget.status.value


@pytest.fixture
def slow_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tile takes 20 ms more, so a run is still going when the test stops it (a tiny
    model on ONNX Runtime can finish the whole image before the first check)."""
    import time

    run_copy = ModelRunner.unet_copy

    def slow(self, batch, index):
        time.sleep(0.02)
        return run_copy(self, batch, index)

    monkeypatch.setattr(ModelRunner, "unet_copy", slow)


def test_cancel_adds_nothing(make_napari_viewer, qtbot, weight_files, slow_tiles) -> None:
    viewer = make_napari_viewer()
    image = add_sample(viewer, "dsb_brightfield")
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    widget.tile_size.value = 64
    widget.overlap.value = 8
    worker = widget.run()
    finished: list[bool] = []
    worker.finished.connect(lambda: finished.append(True))
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=TIMEOUT_MS)
    widget.cancel()
    assert not widget.cancel_button.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    assert finished == [True]
    assert widget.progress.value < widget.progress.max
    assert not labels_named(viewer, f"{image.name} · {widget.model_card.name}")
    assert [type(ly) for ly in viewer.layers] == [Image]
    assert widget.last_prediction is None
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.status.value.startswith("Cancelled")


def test_closing_the_dock_while_running(
    make_napari_viewer, qtbot, weight_files, slow_tiles
) -> None:
    from qtpy.QtCore import QThreadPool

    viewer = make_napari_viewer()
    add_sample(viewer, "dsb_brightfield")
    widget = SegmentWidget(viewer)
    widget.weights.value = weight_files["unet"]
    widget.tile_size.value, widget.overlap.value = 64, 8
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(widget.native.destroyed):
        widget.native.deleteLater()
    assert worker.abort_requested
    assert QThreadPool.globalInstance().waitForDone(TIMEOUT_MS)
    qtbot.wait(50)  # late signals from the worker must not reach the deleted widgets
    assert len(viewer.layers) == 1


def test_unusable_weights_and_wrong_channels_are_reported(
    make_napari_viewer, qtbot, tmp_path, weight_files, errors
) -> None:
    viewer = make_napari_viewer()
    add_sample(viewer)
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    widget = make_widget(viewer, qtbot, bad)
    errors.clear()
    assert widget.run() is None
    assert len(errors) == 1 and "weight file" in errors[0]

    widget.weights.value = weight_files["mismatch"]  # the card reads, loading fails
    run_to_end(widget, qtbot)
    assert len(errors) == 2 and "wrong_card.safetensors" in errors[1]
    assert widget.status.value.startswith("⚠")

    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 255, (96, 96, 2), dtype=np.uint8), name="two channels")
    widget.image_layer.value = viewer.layers["two channels"]
    widget.weights.value = weight_files["unet"]
    widget.channels.signal.value = None  # all channels, as the RGB card says: cannot
    run_to_end(widget, qtbot)
    assert len(errors) == 3 and "2 channels" in errors[2]
    assert not [ly for ly in viewer.layers if ly.name.startswith("two channels ·")]
    assert widget.run_button.enabled
    widget.channels.signal.value = 1  # one of them: segmented (tests/napari/test_channel_row.py)
    run_to_end(widget, qtbot)
    assert len(errors) == 3 and widget.last_prediction.params.channels == (1, 1, 1)


def test_zstack_current_plane_and_all_planes(make_napari_viewer, qtbot, weight_files) -> None:
    viewer = make_napari_viewer()
    plane = load_sample("dsb_fluorescence")[0][0][:96, :128]
    stack = viewer.add_image(
        np.stack([plane, plane[::-1], plane[:, ::-1]]), name="stack", axis_labels=("z", "y", "x")
    )
    viewer.dims.set_current_step(0, 1)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    widget.tile_size.value = 64
    widget.overlap.value = 8
    assert widget.planes.enabled and widget.planes.value == "current"
    name = f"stack · {widget.model_card.name}"

    run_to_end(widget, qtbot)
    (layer,) = labels_named(viewer, name)
    assert layer.data.shape == (96, 128)
    assert layer.metadata["plane"] == (1,)

    widget.planes.value = "all"
    run_to_end(widget, qtbot)
    (layer,) = labels_named(viewer, name)
    assert layer.data.shape == stack.data.shape
    assert layer.metadata["plane"] is None
    assert set(np.unique(layer.metadata["table"]["plane"])) <= {0, 1, 2}


def test_weights_follow_the_session(make_napari_viewer, qtbot, weight_files) -> None:
    viewer = make_napari_viewer()
    session = session_for(viewer)
    session.weights = weight_files["maskrcnn"]
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    assert widget.model_card.family == "maskrcnn"  # the session's weights come first
    session.weights = weight_files["unet"]  # e.g. set by the fine-tune dock
    assert widget.weights.value == weight_files["unet"].resolve()
    assert widget.model_card.family == "unet"
    assert not widget.prob_threshold.native.isHidden()


def test_a_models_own_thresholds_are_shown_and_used(
    make_napari_viewer, qtbot, weight_files, tmp_path
) -> None:
    own = {"prob_threshold": 0.7, "boundary_threshold": 0.05, "min_size": 25, "min_distance": 6}
    card = models.read_card(weight_files["unet"])
    card.postprocess = own
    tuned = save_weights(
        models.load_weights(weight_files["unet"]).model, card, tmp_path / "tuned.safetensors"
    )
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = make_widget(viewer, qtbot, tuned)
    assert widget.prob_threshold.value == pytest.approx(0.7)
    assert widget.boundary_threshold.value == pytest.approx(0.05)
    assert widget.min_size.value == 25
    assert "thresholds:" in widget.card.value
    run_to_end(widget, qtbot)
    first = widget.last_prediction
    post = first.params.post
    assert (post.prob_threshold, post.boundary_threshold, post.min_size) == (0.7, 0.05, 25)
    assert post.min_distance == 6  # no widget for it: the card's value

    widget.prob_threshold.value = 0.6  # the user's own change is re-applied
    qtbot.waitUntil(lambda: widget.last_prediction is not first, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not widget._runner.reapplying, timeout=TIMEOUT_MS)
    second = widget.last_prediction
    assert second.params.post.prob_threshold == pytest.approx(0.6)
    widget.weights.value = weight_files["maskrcnn"]  # another model: its own (default) values
    assert widget.score_threshold.value == pytest.approx(0.5)
    assert widget.prob_threshold.value == pytest.approx(0.5)
    assert widget.min_size.value == 10
    # picking a model re-applies nothing: no debounce timer started, no re-apply worker
    # (both are what ``reapplying`` reports), once the events already posted are handled
    QApplication.processEvents()
    assert not widget._runner.reapplying
    assert widget.last_prediction is second


def test_rerun_never_overwrites_corrected_labels(make_napari_viewer, qtbot, weight_files) -> None:
    viewer = make_napari_viewer()
    image = add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    run_to_end(widget, qtbot)
    name = f"{image.name} · {widget.model_card.name}"
    (layer,) = labels_named(viewer, name)
    # an undoable edit, as the Correct tab and napari's brush make it (emits a paint event)
    layer.data_setitem((np.array([0, 1]), np.array([0, 0])), 999)
    corrected = layer.data.copy()
    run_to_end(widget, qtbot)
    assert np.array_equal(labels_named(viewer, name)[0].data, corrected)  # corrections kept
    (new_layer,) = labels_named(viewer, f"{name} [2]")
    assert new_layer.data.shape == corrected.shape
    widget.prob_threshold.value = 0.3  # re-applying goes to the new layer, not the corrected
    qtbot.waitUntil(lambda: not widget.runner.reapplying, timeout=TIMEOUT_MS)
    assert np.array_equal(labels_named(viewer, name)[0].data, corrected)


def test_a_large_plane_is_segmented_in_blocks_then_needs_a_run_for_new_thresholds(
    make_napari_viewer, qtbot, weight_files, monkeypatch
) -> None:
    small = BlockOptions(block_size=128, halo=32, block_pixels=100 * 100)  # 256² is "large"
    monkeypatch.setattr(api, "DEFAULT_BLOCKS", small)
    calls: list[BlockOptions] = []
    real = predict_blocks.iter_predict_large

    def spy(*args, **kwargs):
        calls.append(kwargs["blocks"])
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_blocks, "iter_predict_large", spy)
    viewer = make_napari_viewer()
    image = add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    run_to_end(widget, qtbot)
    assert calls == [small]
    layer = viewer.layers[f"{image.name} · {widget.model_card.name}"]
    prediction = widget.last_prediction
    assert layer.data.shape == image.data.shape[:2] and layer.data.dtype == np.uint16
    assert len(prediction.table["label"]) == prediction.n_objects == len(np.unique(layer.data)) - 1
    assert "large image" in widget.status.value
    before = layer.data.copy()
    widget.prob_threshold.value = 0.9
    qtbot.waitUntil(lambda: "press Run" in widget.status.value, timeout=TIMEOUT_MS)
    np.testing.assert_array_equal(layer.data, before)  # unchanged until the next run


def test_many_boxes_are_coloured_by_score_instead_of_labelled(make_napari_viewer) -> None:
    from napari_cellseg._napari import _layers

    viewer = make_napari_viewer()
    n = _layers.MAX_BOX_TEXTS + 1
    y0 = np.arange(n, dtype=float) * 3
    table = {"label": np.arange(1, n + 1), "bbox_y0": y0, "bbox_x0": y0, "score": y0 / y0.max()}
    table.update(bbox_y1=y0 + 2, bbox_x1=y0 + 2)
    many = _layers.put_boxes(viewer, "many", table, (), image=None)
    assert len(many.data) == n and np.all(np.asarray(many.text.values) == "")  # no labels
    edges = many.edge_color
    assert not np.allclose(edges[0], edges[-1])  # the lowest and the highest score differ
    np.testing.assert_allclose(many.features["score"], table["score"])
    few = _layers.put_boxes(viewer, "few", {k: v[:3] for k, v in table.items()}, (), image=None)
    assert list(few.text.values) == [f"{s:.2f}" for s in table["score"][:3]]


def test_test_time_augmentation_is_offered_for_both_families(
    make_napari_viewer, qtbot, weight_files
) -> None:
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    assert widget.tta.value == 1 and not widget.tta.native.isHidden()
    widget.tta.value = 2
    run_to_end(widget, qtbot)
    assert widget.last_prediction.params.tta == 2
    widget.weights.value = weight_files["maskrcnn"]
    assert not widget.tta.native.isHidden() and widget.tta.value == 2
    run_to_end(widget, qtbot)
    assert widget.last_prediction.params.tta == 2


def test_stacks_are_stitched_in_3d_and_linked_over_time(
    make_napari_viewer, qtbot, weight_files
) -> None:
    from napari_cellseg.labels.stitching import link_frames, stitch_planes

    viewer = make_napari_viewer()
    plane = load_sample("dsb_fluorescence")[0][0][:96, :128]
    viewer.add_image(
        np.stack([plane, plane, plane[:, ::-1]]),
        name="stack",
        scale=(4, 2, 2),
        axis_labels=("z", "y", "x"),
    )
    widget = make_widget(viewer, qtbot, weight_files["unet"])
    widget.tile_size.value, widget.overlap.value = 64, 8
    widget.planes.value = "all"
    assert widget.joining.enabled and widget.stitch_iou.native.isHidden()
    run_to_end(widget, qtbot)
    flat = widget.last_prediction.labels
    assert flat.max() > 0

    widget.joining.stitch_3d.value = True  # re-joins the kept result, no new run
    assert not widget.stitch_iou.native.isHidden() and widget.max_gap.native.isHidden()
    qtbot.waitUntil(lambda: widget.last_prediction.params.stitch_3d, timeout=TIMEOUT_MS)
    # with the z step the run read from the layer's scale: 4 / 2
    assert widget.last_prediction.params.z_spacing == 2.0
    np.testing.assert_array_equal(widget.last_prediction.labels, stitch_planes(flat, z_spacing=2.0))
    run_to_end(widget, qtbot)
    prediction = widget.last_prediction
    assert prediction.params.z_spacing == 2.0 and prediction.axes == "ZYX"
    np.testing.assert_array_equal(prediction.labels, stitch_planes(flat, z_spacing=2.0))
    (layer,) = labels_named(viewer, f"stack · {widget.model_card.name}")
    np.testing.assert_array_equal(layer.data, prediction.labels)

    widget.joining.stitch_3d.value = False
    widget.joining.link_time.value = True  # one leading axis, link only: time
    widget.max_gap.value = 0
    run_to_end(widget, qtbot)
    prediction = widget.last_prediction
    assert prediction.axes == "TYX" and prediction.params.link_time
    np.testing.assert_array_equal(prediction.labels, link_frames(flat, max_gap=0))
    assert prediction.n_objects == prediction.labels.max()
