"""The Segment tab's Object diameter row: modes, units, measuring, the estimate after a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from skimage.draw import disk

from napari_cellseg._napari import _segment_run
from napari_cellseg._napari._segment_options import build_request
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.segment_widget import SegmentWidget
from napari_cellseg.inference.planes import Prediction
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sized_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net whose card records an object diameter of 24 px."""
    path = tmp_path_factory.mktemp("weights") / "sized.safetensors"
    card = ModelCard.for_model("unet", TINY_UNET, object_diameter=24)
    save_weights(build_model("unet", **TINY_UNET), card, path)
    return path


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "plain.safetensors"
    save_weights(build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), path)
    return path


def make_widget(make_napari_viewer, qtbot, weights: Path, **image_kwargs):
    viewer = make_napari_viewer()
    session_for(viewer).weights = weights
    viewer.add_image(np.zeros((96, 96), np.float32), name="cells", **image_kwargs)
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    assert widget.weights_path == weights
    return viewer, widget


def params(viewer, widget: SegmentWidget):
    return build_request(
        viewer, widget.runner._options, image=widget.selected_image,
        weights=widget.weights_path, card=widget.model_card, device="cpu",
        diameter=widget.diameter,
    ).params  # fmt: skip


def discs(diameter: int, centres: list[tuple[int, int]], shape=(128, 128)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for i, centre in enumerate(centres, start=1):
        labels[disk(centre, diameter / 2, shape=shape)] = i
    return labels


def test_each_mode_reaches_the_predict_params(
    make_napari_viewer, qtbot, sized_weights, plain_weights
) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    row = widget.diameter
    assert row.mode.value == "auto"  # the card records its object size
    assert params(viewer, widget).diameter == "auto"
    assert session_for(viewer).diameter is None  # untouched: each model's own default
    assert "diameter" in row.mode.tooltip.lower() and row.unit.value == "px"
    row.mode.value = "off"
    assert params(viewer, widget).diameter == "off"
    row.mode.value = "value"
    row.value.value = 40
    assert params(viewer, widget).diameter == 40.0
    assert session_for(viewer).diameter == 40.0  # shared with the Batch and Evaluate docks
    row.mode.value = "auto"
    assert params(viewer, widget).diameter == "auto"

    _viewer2, other = make_widget(make_napari_viewer, qtbot, plain_weights)
    assert other.diameter.mode.value == "off"  # no object size on the card: no rescaling


def test_a_fine_tuned_model_brings_its_own_diameter(make_napari_viewer, qtbot, tmp_path) -> None:
    path = tmp_path / "tuned.safetensors"
    card = ModelCard.for_model("unet", TINY_UNET, object_diameter=24, default_diameter=150)
    save_weights(build_model("unet", **TINY_UNET), card, path)
    viewer, widget = make_widget(make_napari_viewer, qtbot, path)
    row = widget.diameter
    assert (row.mode.value, row.value.value, row.value.enabled) == ("value", 150.0, True)
    assert "150 px" in row.estimate.value and not row.estimate.native.isHidden()
    assert params(viewer, widget).diameter == 150.0
    assert session_for(viewer).diameter is None  # untouched: each model's own default


def test_micrometres_with_a_physical_scale(make_napari_viewer, qtbot, sized_weights) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights, scale=(0.5, 0.5))
    row = widget.diameter
    assert row.unit.value == "µm"
    row.mode.value = "value"
    row.value.value = 12
    assert row.spec() == "12um"
    assert params(viewer, widget).diameter == pytest.approx(24.0)  # 12 µm at 0.5 µm/px
    viewer.add_labels(discs(20, [(20, 20), (70, 70)]), name="discs", scale=(0.5, 0.5))
    row.source.value = viewer.layers["discs"]
    row.measure_button.clicked.emit()
    assert row.value.value == pytest.approx(10, rel=0.1)  # 20 px at 0.5 µm/px, shown in µm
    assert params(viewer, widget).diameter == pytest.approx(20, rel=0.1)


def test_measure_from_a_labels_layer(make_napari_viewer, qtbot, sized_weights) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    viewer.add_labels(discs(20, [(20, 20), (20, 70), (70, 30), (90, 90)]), name="discs")
    row = widget.diameter
    row.source.value = viewer.layers["discs"]
    row.measure_button.clicked.emit()
    assert row.mode.value == "value"
    assert row.value.value == pytest.approx(20, rel=0.1)
    assert params(viewer, widget).diameter == pytest.approx(20, rel=0.1)


def test_measure_from_drawn_ellipses(make_napari_viewer, qtbot, sized_weights) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    # two ellipses: semi-axes 8 x 12 (equivalent diameter 19.6) and 10 x 10 (20)
    first = np.array([[10, 10], [10, 34], [26, 34], [26, 10]], float)
    second = np.array([[50, 50], [50, 70], [70, 70], [70, 50]], float)
    viewer.add_shapes([first, second], shape_type="ellipse", name="drawn")
    row = widget.diameter
    row.source.value = viewer.layers["drawn"]
    row.measure_button.clicked.emit()
    expected = np.median([2 * np.sqrt(8 * 12), 20.0])
    assert row.value.value == pytest.approx(expected, rel=0.1)


def test_the_estimate_is_shown_after_an_auto_run(
    make_napari_viewer, qtbot, sized_weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def fake_job(data, weights, params):
        seen.append(params)
        yield from ()
        return Prediction(
            labels=np.zeros(data.shape[:2], np.uint16), table={"label": np.zeros(0)},
            card=ModelCard.for_model("unet", TINY_UNET, object_diameter=24), params=params,
            device="cpu", axes="YX", diameter=41.0, scale=0.44,
        )  # fmt: skip

    monkeypatch.setattr(_segment_run, "predict_job", fake_job)
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_prediction is not None and not widget.running,
                    timeout=TIMEOUT_MS)  # fmt: skip
    assert seen[0].diameter == "auto"
    assert widget.diameter.estimate.value == "auto — estimated 41 px (×0.44)"
    assert not widget.diameter.estimate.native.isHidden()  # shown, not only set
    assert "cells" in " ".join(ly.name for ly in viewer.layers if ly._type_string == "labels")


def test_a_rescaled_run_and_new_thresholds_stay_on_the_image_grid(
    make_napari_viewer, qtbot, sized_weights
) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    row = widget.diameter
    row.mode.value = "value"
    row.value.value = 12  # the card's 24 px: the image is enlarged ×2 for the network
    widget.runner._options.tile_size.value = 64
    widget.runner._options.overlap.value = 8
    widget._device.value = "cpu"
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_prediction is not None and not widget.running,
                    timeout=TIMEOUT_MS)  # fmt: skip
    first = widget.last_prediction
    assert first.diameter == 12.0 and first.scale == pytest.approx(2.0)
    assert row.estimate.value == "value — used 12 px (×2.00)"
    slider = widget.runner._options.thresholds["prob_threshold"]
    slider.value = 0.9 if slider.value < 0.9 else 0.1
    qtbot.waitUntil(lambda: widget.last_prediction is not first and not widget.runner.reapplying,
                    timeout=TIMEOUT_MS)  # fmt: skip
    labels = [ly for ly in viewer.layers if ly._type_string == "labels"]
    assert len(labels) == 1 and labels[0].data.shape == (96, 96)
    assert widget.last_prediction.labels.shape == (96, 96)


def test_the_estimate_passes_are_named_in_the_status_line(
    make_napari_viewer, qtbot, sized_weights
) -> None:
    from types import SimpleNamespace

    from napari_cellseg.events import Progress

    _, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    runner = widget.runner
    runner._request = SimpleNamespace(source=SimpleNamespace(n_planes=1))
    for event, expected in [
        (
            Progress("diameter", 1, 6, "estimating the object size"),
            "Estimating the object size (1/6)",
        ),
        (Progress("diameter", 3, 9, "choosing the scale"), "Choosing the scale (3/9)"),
    ]:
        runner._on_event(event)
        runner._flush_progress()
        assert runner.status.value == expected


def test_the_backend_row_reaches_the_predict_params(
    make_napari_viewer, qtbot, sized_weights
) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot, sized_weights)
    row = widget.runner._options.backend
    assert row.label == "Backend" and "bfloat16" in row.tooltip
    assert row.value == "auto" and params(viewer, widget).backend == "auto"
    assert set(row.choices) == {"auto", "torch", "onnx", "int8", "bf16"}
    row.value = "bf16"
    assert params(viewer, widget).backend == "bf16"
    row.value = "int8"
    assert params(viewer, widget).backend == "int8"
