"""The Segment tab's Channels rows: a 2-channel layer segments with the chosen channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from scipy import ndimage

from napari_cellseg import models
from napari_cellseg._napari import segment_widget as sw
from napari_cellseg._napari._channels import METADATA_KEY
from napari_cellseg._napari._sample_data import load_sample
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.segment_widget import SegmentWidget
from tiny_models import save_tiny

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("unet", tmp_path_factory.mktemp("weights") / "u.safetensors")


@pytest.fixture(autouse=True)
def _no_bundled_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "list_bundled_weights", list)


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(sw, "show_error", shown.append)
    return shown


def nuclei() -> np.ndarray:
    return load_sample("dsb_fluorescence")[0][0][:96, :128]


def two_channels() -> np.ndarray:
    """CYX: a blurred copy as "cytoplasm" in channel 0, the nuclei in channel 1."""
    plane = nuclei()
    cytoplasm = ndimage.gaussian_filter(plane.astype(np.float32), 6).astype(plane.dtype)
    return np.stack([cytoplasm, plane])


def make_widget(viewer, qtbot, weights: Path) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    widget.weights.value = weights
    widget.tile_size.value, widget.overlap.value = 64, 8
    return widget


def run_maps(widget: SegmentWidget, qtbot) -> np.ndarray:
    """Run; the probability maps (a random tiny model's labels say little)."""
    widget.probabilities.value = True
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert not widget.status.value.startswith("⚠"), widget.status.value
    assert widget.last_prediction.labels.shape == nuclei().shape
    return widget.last_prediction.probabilities


def test_a_two_channel_layer_segments_its_signal_channel(
    make_napari_viewer, qtbot, weights, errors
) -> None:
    viewer = make_napari_viewer()
    alone = viewer.add_image(nuclei(), name="nuclei")
    both = viewer.add_image(two_channels(), name="both")
    widget = make_widget(viewer, qtbot, weights)
    channels = widget.channels
    widget.image_layer.value = both
    assert channels.axis.value == 0  # a leading axis of 2: channels, not a z-stack
    assert not widget.planes.enabled
    assert channels.signal.value == 0 and channels.helper.value is None
    assert channels.inputs.value == "c0, c0, c0 → 3 inputs (rgb), as --channels 0,0,0"

    blurred = run_maps(widget, qtbot)  # no refusal: channel 0, the "cytoplasm"
    channels.signal.value = 1
    assert channels.inputs.value.startswith("c1, c1, c1")
    maps = run_maps(widget, qtbot)
    assert not np.array_equal(maps, blurred)
    assert errors == []
    assert widget.last_prediction.params.channels == (1, 1, 1)
    assert widget.last_prediction.axes == "CYX"

    widget.image_layer.value = alone
    assert channels.axis.value is None and not channels.signal.enabled
    np.testing.assert_array_equal(run_maps(widget, qtbot), maps)  # the same as channel 1

    widget.image_layer.value = both  # its choice is remembered
    assert channels.signal.value == 1
    channels.helper.value = 0
    assert widget.channels.channels() == (1, 0, 1)
    helped = run_maps(widget, qtbot)
    assert widget.last_prediction.params.channels == (1, 0, 1)
    assert not np.array_equal(helped, maps)  # the helper reached the model

    viewer.add_image(two_channels()[0], name="cyto")  # the same channels as separate layers
    widget.image_layer.value = alone
    assert "cyto" in channels.helper.choices and channels.helper.enabled
    channels.helper.value = "cyto"
    assert channels.inputs.value == "nuclei, cyto, nuclei → 3 inputs (rgb)"
    np.testing.assert_array_equal(run_maps(widget, qtbot), helped)
    assert widget.last_prediction.params.channels == (0, 1, 0)
    assert alone.metadata[METADATA_KEY]["channels"]["helper"] == "cyto"
    viewer.layers.remove("cyto")
    assert channels.helper.value is None  # gone: no helper


def test_the_choice_is_kept_per_layer(make_napari_viewer, qtbot, weights) -> None:
    viewer = make_napari_viewer()
    a = viewer.add_image(two_channels(), name="a")
    b = viewer.add_image(np.stack([nuclei()] * 3), name="b", axis_labels=("z", "y", "x"))
    widget = make_widget(viewer, qtbot, weights)
    channels = widget.channels
    widget.image_layer.value = a
    channels.signal.value, channels.helper.value = 1, 0
    assert a.metadata[METADATA_KEY]["channels"] == {"axis": 0, "signal": 1, "helper": 0}
    assert session_for(viewer).channels == {"axes": "CYX", "signal": 1, "helper": 0}

    widget.image_layer.value = b  # labelled z: a z-stack
    assert channels.axis.value is None and widget.planes.enabled
    assert session_for(viewer).channels is None
    channels.axis.value = 0  # the override: its 3 planes are channels after all
    assert not widget.planes.enabled
    assert channels.signal.choices == (None, 0, 1, 2)
    channels.signal.value = 2

    widget.image_layer.value = a
    assert (channels.axis.value, channels.signal.value, channels.helper.value) == (0, 1, 0)
    widget.image_layer.value = b
    assert (channels.axis.value, channels.signal.value) == (0, 2)


def test_rgb_and_channels_last_layers(make_napari_viewer, qtbot, weights) -> None:
    viewer = make_napari_viewer()
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="rgb", rgb=True)
    last = viewer.add_image(np.zeros((64, 64, 2), np.uint8), name="last", rgb=False)
    widget = make_widget(viewer, qtbot, weights)
    channels = widget.channels
    widget.image_layer.value = rgb
    assert channels.axis.value == 2 and channels.signal.value is None  # colour: the card's way
    assert channels.axes() == "YXS" and channels.channels() is None
    widget.image_layer.value = last
    assert channels.axis.value == 2 and channels.axes() == "YXC"
    assert channels.channels() == (0, 0, 0)


def test_a_channel_out_of_range_is_one_clear_line(
    make_napari_viewer, qtbot, weights, errors
) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(two_channels(), name="cells")
    widget = make_widget(viewer, qtbot, weights)
    widget.channels.signal.value = 1
    layer.data = np.stack([nuclei()] * 1)  # now one channel only; the row still says c1
    assert widget.run() is None
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "signal channel 1 is out of range" in errors[0] and "'cells'" in errors[0]
