"""The Correct tab's "Correct next": rank a folder, open the most doubtful image, next object."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile

from doubtful_model import ambiguous_image, clear_image, doubtful_model
from napari_cellseg._napari import _correct_next as cn
from napari_cellseg._napari import correct_widget as cw
from napari_cellseg._napari._correct_helpers import camera
from napari_cellseg._napari._session import session_for
from napari_cellseg.params import PredictParams

pytestmark = pytest.mark.gui


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    messages: list[str] = []
    monkeypatch.setattr(cw.helpers, "show_error", messages.append)
    monkeypatch.setattr(cn, "show_error", messages.append)
    monkeypatch.setattr(cn, "show_info", messages.append)
    return messages


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a_clear.tif", clear_image())
    tifffile.imwrite(images / "b_ambiguous.tif", ambiguous_image())
    tifffile.imwrite(images / "c_clear.tif", clear_image()[:, ::-1])
    return images


@pytest.fixture
def setup(make_napari_viewer, qtbot, shown, monkeypatch):
    viewer = make_napari_viewer()
    widget = cw.CorrectWidget(viewer)
    qtbot.addWidget(widget.native)
    panel = widget.correct_next
    session_for(viewer).weights = Path("doubtful.safetensors")  # a model is chosen...
    model = doubtful_model()  # ...and this one runs
    cpu = PredictParams(device="cpu")
    monkeypatch.setattr(cn.CorrectNextPanel, "_model", lambda _self: (model, cpu))
    return SimpleNamespace(viewer=viewer, widget=widget, panel=panel, qtbot=qtbot)


def _wait(setup) -> None:
    setup.qtbot.waitUntil(lambda: not setup.panel.running, timeout=60_000)


def test_rank_folder_lists_the_doubtful_image_first(setup, folder) -> None:
    panel = setup.panel
    panel.rank_folder(folder)
    assert panel.running and panel.cancel_button.enabled and not panel.rank_button.enabled
    _wait(setup)
    texts = [panel.list.item(i).text() for i in range(panel.list.count())]
    assert len(texts) == 3 and texts[0].startswith("1. b_ambiguous.tif")
    assert "disagree" in texts[0]
    assert panel.status.value.startswith("ranked 3 image(s)")
    assert "saw objects" not in panel.status.value  # the model has no object size
    assert panel.rank_button.enabled and not panel.cancel_button.enabled


def test_ranking_says_the_size_the_model_chose(setup, folder, monkeypatch) -> None:
    from dataclasses import replace

    model = doubtful_model()
    model = replace(model, card=replace(model.card, default_diameter=18.0))
    cpu = PredictParams(device="cpu")
    monkeypatch.setattr(cn.CorrectNextPanel, "_model", lambda _self: (model, cpu))
    setup.panel.rank_folder(folder)
    _wait(setup)
    status = setup.panel.status.value
    assert "the model saw objects about 18 px across" in status
    assert "give it (the Segment tab's Object diameter) and rank again" in status


def test_double_click_opens_and_next_object_jumps(setup, folder) -> None:
    panel, viewer, widget = setup.panel, setup.viewer, setup.widget
    panel.rank_folder(folder)
    _wait(setup)
    panel.list.itemDoubleClicked.emit(panel.list.item(0))
    image = viewer.layers["b_ambiguous"]
    labels = viewer.layers.selection.active
    assert labels.name.startswith("b_ambiguous · doubt")
    assert np.array_equal(image.data, ambiguous_image())
    assert widget.labels_layer.value is labels and widget.image_layer.value is image
    panel.next_button.clicked.emit()  # the objects came with the ranking: no worker
    assert not panel.running
    assert labels.selected_label == 2
    assert tuple(camera(viewer).center[-2:]) == pytest.approx((47.5, 10.5))
    assert panel.object_info.value.startswith("object 2 (1/3): TTA copies disagree")
    panel.next_object()
    assert labels.selected_label in (1, 3)
    labels.data = np.where(labels.data == 2, 0, labels.data)  # the user deleted object 2
    seen = set()
    for _ in range(3):
        panel.next_object()
        seen.add(labels.selected_label)
    assert seen == {1, 3}


def test_next_object_scores_the_current_image(setup) -> None:
    panel, viewer = setup.panel, setup.viewer
    viewer.add_image(clear_image(), name="cells")
    labels = np.zeros((64, 64), np.uint16)
    labels[6:22, 6:22] = 4
    labels[28:36, 50:60] = 7  # painted where the model sees nothing: the most doubtful
    layer = viewer.add_labels(labels, name="cells · mine")
    viewer.layers.selection.active = layer
    panel.next_object()
    assert panel.running
    _wait(setup)
    assert layer.selected_label == 7
    assert "TTA copies disagree (IoU 0.00)" in panel.object_info.value
    assert tuple(camera(viewer).center[-2:]) == pytest.approx((31.5, 54.5))


def test_cancel_and_errors(setup, folder, shown) -> None:
    panel = setup.panel
    panel.rank_folder(folder)
    panel.cancel()
    _wait(setup)
    assert panel.list.count() == 0
    assert "cancel" in panel.status.value
    panel.rank_folder(folder / "missing")
    assert "input not found" in shown[-1]
    panel.next_object()  # no labels layer
    assert "no labels layer" in shown[-1]
    setup.viewer.add_labels(np.zeros((8, 8), np.uint8), name="lonely")
    panel.next_object()
    assert "choose the image the labels belong to" in shown[-1]


def test_no_model_chosen(make_napari_viewer, qtbot, shown, folder) -> None:
    viewer = make_napari_viewer()
    widget = cw.CorrectWidget(viewer)
    qtbot.addWidget(widget.native)
    widget.correct_next.rank_folder(folder)
    assert "choose a model in the Segment tab first" in shown[-1]
    assert cn.object_point(SimpleNamespace(plane=0, centroid=(1.0, 2.0)), (5, 5)) == (1.0, 2.0)


def test_a_possible_missed_object_is_shown_with_a_free_label(setup) -> None:
    from napari_cellseg.inference.uncertainty import RankedObject

    viewer, panel = setup.viewer, setup.panel
    data = np.zeros((40, 40), np.uint16)
    data[2:8, 2:8] = 3
    layer = viewer.add_labels(data, name="cells · detector")
    viewer.layers.selection.active = layer
    missed = RankedObject(0, 0, 0.45, "possible missed object (score 0.45, below 0.50)",
                          (20, 20, 30, 30), (24.5, 24.5), 100)  # fmt: skip
    kept = RankedObject(3, 0, 0.2, "low detection score 0.80", (2, 2, 8, 8), (4.5, 4.5), 36)
    panel.objects[layer.name] = ([missed, kept], 0)
    panel.next_object()
    assert layer.selected_label == 4  # the next free id, to paint the object if it is one
    assert panel.object_info.value.startswith("no object (paint it as 4 if it is one) (1/2)")
    assert tuple(camera(viewer).center[-2:]) == pytest.approx((24.5, 24.5))
    panel.next_object()
    assert layer.selected_label == 3


def test_next_object_segments_the_layers_chosen_channel(setup) -> None:
    """A two-channel C, Y, X layer: its stored channel choice (signal c1), as in Segment."""
    from napari_cellseg._napari._channels import ChannelChoice, store_choice

    panel, viewer = setup.panel, setup.viewer
    two = np.stack([np.zeros_like(clear_image()), clear_image()])
    image = viewer.add_image(two, name="cells")
    store_choice(image.metadata, ChannelChoice(axis=0, signal=1))
    labels = np.zeros((64, 64), np.uint16)
    labels[6:22, 6:22] = 4
    labels[28:36, 50:60] = 7
    layer = viewer.add_labels(labels, name="cells · mine")
    viewer.layers.selection.active = layer
    setup.widget.image_layer.value = image
    panel.next_object()
    _wait(setup)
    assert layer.selected_label == 7  # as on the one-channel image: channel 1 was segmented
    assert "TTA copies disagree (IoU 0.00)" in panel.object_info.value
