"""The Measure dock: per-object measurements of a labels layer, on hover and as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellseg._napari import measure_widget as mw
from napari_cellseg._napari.measure_widget import MeasureWidget
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.io.samples import get_sample

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(mw, "show_error", shown.append)
    monkeypatch.setattr(mw, "show_info", lambda message: None)
    return shown


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    sample = get_sample("dsb_he")
    return np.asarray(read_image(sample.image_path).data), np.asarray(read_labels(sample.mask_path))


def make_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget.native)
    return viewer, widget


def measure(qtbot, widget: MeasureWidget) -> None:
    assert widget.measure() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_measure_shows_features_and_saves_csv(
    make_napari_viewer, qtbot, sample, errors, tmp_path
) -> None:
    image, truth = sample
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    viewer.add_image(image, name="he", rgb=True)
    labels = viewer.add_labels(truth, name="he · demo U-Net")
    widget.labels_layer.value = labels
    assert widget.image_layer.value.name == "he"  # the image the labels were made from
    assert not widget.save_button.enabled
    measure(qtbot, widget)
    assert errors == []
    ids = np.unique(truth)[1:]
    assert widget.table["label"].tolist() == ids.tolist()
    first = ids[0]
    area = int((truth == first).sum())
    assert widget.table["area"][0] == area
    rgb = image[..., :3][truth == first].mean(axis=0)
    np.testing.assert_allclose(
        [widget.table[f"mean_intensity_c{c}"][0] for c in range(3)], rgb, rtol=1e-6
    )
    # the layer's features: napari shows the row of the object under the cursor
    assert labels.features["area"].tolist() == widget.table["area"].tolist()
    y, x = np.argwhere(truth == first)[0]
    shown = labels._get_properties((y, x))
    assert f"area: {area}" in shown
    assert widget.status.value.startswith(f"he · demo U-Net: {len(ids)} objects, median area")
    assert widget.save_button.enabled
    other = viewer.add_labels(np.zeros_like(truth), name="other")
    widget.labels_layer.value = other  # another layer shown: its table does not exist
    assert not widget.save_button.enabled
    widget.labels_layer.value = labels  # back: the measured table can be saved again
    assert widget.save_button.enabled
    viewer.layers.remove(other)
    summary = widget.summary.value  # median / mean / min / max per quantity
    assert list(summary["columns"]) == ["median", "mean", "min", "max"]
    assert summary["index"][0] == "area" and "mean_intensity_c2" in summary["index"]
    assert summary["data"][0][3] == format(float(widget.table["area"].max()), ".3g")

    widget.csv_path.value = tmp_path / "cells"  # no suffix: .csv is added
    written = widget.save_csv()
    assert written == tmp_path / "cells.csv"
    rows = read_csv(written)
    assert len(rows) == len(ids)
    assert rows[0]["label"] == str(first) and float(rows[0]["area"]) == area
    assert "mean_intensity_c2" in rows[0] and "area_um2" not in rows[0]
    assert not list(tmp_path.glob(".*.tmp"))
    assert widget.status.value.endswith(f"saved to {written}")
    viewer.layers.remove(labels)  # the measured layer is gone: so is its table
    assert widget.table is None and len(widget.summary.value["index"]) == 0


def test_edits_after_measuring_make_the_table_stale(
    make_napari_viewer, qtbot, sample, errors, tmp_path
) -> None:
    image, truth = sample
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    viewer.add_image(image, name="he", rgb=True)
    labels = viewer.add_labels(truth.copy(), name="he · demo U-Net")
    measure(qtbot, widget)
    n = len(widget.table["label"])
    labels.paint((5, 5), 60000)  # a new object painted with napari's brush
    assert widget.stale and "measure again" in widget.status.value
    widget.csv_path.value = tmp_path / "cells.csv"
    assert widget.save_csv() is None
    assert errors[-1].endswith("press Measure objects again")
    assert not (tmp_path / "cells.csv").exists()
    measure(qtbot, widget)
    assert len(widget.table["label"]) == n + 1 and widget.table["label"][-1] == 60000
    assert widget.save_csv() == tmp_path / "cells.csv"
    labels.data = truth.copy()  # new data from the Segment tab (Run again)
    assert widget.stale


def test_calibrated_image_adds_micrometre_columns(
    make_napari_viewer, qtbot, sample, errors
) -> None:
    image, truth = sample
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    viewer.add_image(image, name="he", rgb=True, scale=(0.25, 0.25))
    viewer.add_labels(truth, name="he · demo U-Net", scale=(0.25, 0.25))
    assert widget.pixel_size.value == pytest.approx(0.25)
    measure(qtbot, widget)
    np.testing.assert_allclose(widget.table["area_um2"], widget.table["area"] * 0.0625)
    assert "µm²" in widget.status.value


def test_wrong_image_and_missing_layer_are_notifications(
    make_napari_viewer, qtbot, sample, errors
) -> None:
    _image, truth = sample
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    assert widget.measure() is None
    assert errors == ["no labels layer: segment an image or open a label image first"]
    viewer.add_image(np.zeros((10, 10), np.uint8), name="small")
    viewer.add_labels(truth, name="truth")
    widget.image_layer.value = viewer.layers["small"]
    measure(qtbot, widget)
    assert "'truth' is" in errors[-1] and "choose the image the labels were made from" in errors[-1]
    assert widget.table is None and not widget.save_button.enabled
    widget.image_layer.value = None  # shapes only
    measure(qtbot, widget)
    assert len(widget.table["label"]) == len(np.unique(truth)) - 1
    assert not [k for k in widget.table if "intensity" in k]


def test_one_plane_result_over_a_stack(make_napari_viewer, qtbot, errors) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    stack = np.zeros((3, 32, 32), np.uint8)
    stack[1] = 50
    viewer.add_image(stack, name="stack", axis_labels=("z", "y", "x"))  # not 3 channels
    plane = np.zeros((32, 32), np.uint16)
    plane[4:10, 4:10] = 1
    labels = viewer.add_labels(plane, name="stack · demo U-Net", metadata={"plane": (1,)})
    viewer.dims.set_current_step(0, 2)  # the metadata's plane wins over the one on screen
    measure(qtbot, widget)
    assert errors == []
    assert widget.table["z"].tolist() == [1]  # one lead axis reads as Z
    assert widget.table["mean_intensity_c0"].tolist() == [50]
    del labels.metadata["plane"]  # a hand-made 2-D layer: the plane on screen
    measure(qtbot, widget)
    assert widget.table["z"].tolist() == [2]
    assert widget.table["mean_intensity_c0"].tolist() == [0]


def test_a_channel_axis_gives_intensities_per_channel(make_napari_viewer, qtbot, errors) -> None:
    """The image layer's channel choice (the Segment tab's) says which axis holds channels."""
    from napari_cellseg._napari._channels import ChannelChoice, store_choice

    viewer, widget = make_widget(make_napari_viewer, qtbot)
    data = np.zeros((4, 2, 32, 32), np.uint8)  # Z, C, Y, X
    data[:, 0] = 10
    data[:, 1] = 200
    data[2, 1] = 100
    image = viewer.add_image(data, name="zc")
    store_choice(image.metadata, ChannelChoice(axis=1, signal=0))
    plane = np.zeros((32, 32), np.uint16)
    plane[4:10, 4:10] = 1
    viewer.add_labels(plane, name="zc · demo U-Net", metadata={"plane": (2,)})
    measure(qtbot, widget)
    assert errors == []
    assert widget.table["z"].tolist() == [2]
    assert widget.table["mean_intensity_c0"].tolist() == [10]
    assert widget.table["mean_intensity_c1"].tolist() == [100]
