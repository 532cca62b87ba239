"""The Segment dock: docking, image picker, weight-file card, recent files, device label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellseg import models
from napari_cellseg._napari import segment_widget as sw
from napari_cellseg._napari.segment_widget import SegmentWidget
from napari_cellseg.device import resolve_device
from napari_cellseg.errors import WeightFileError
from napari_cellseg.params import PostprocessParams

pytestmark = pytest.mark.gui

GOOD_MAGIC = b"GOOD-TEST-CARD"


class FakeCard:
    family = "unet"

    def __init__(self, path: Path) -> None:
        self.path = path

    def summary(self) -> str:
        return f"U-Net (fake card for {self.path.name})\ninput channels: 1"

    def post_params(self, base: PostprocessParams | None = None) -> PostprocessParams:
        return base or PostprocessParams()


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv(sw.CONFIG_ENV, str(path))
    return path


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(sw, "show_error", shown.append)
    return shown


@pytest.fixture
def fake_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files starting with GOOD_MAGIC read as valid cards; no bundled weights."""
    real_read_card = models.read_card

    def read_card(path: Path) -> object:
        path = Path(path)
        if path.read_bytes().startswith(GOOD_MAGIC):
            return FakeCard(path)
        return real_read_card(path)

    monkeypatch.setattr(models, "read_card", read_card)
    monkeypatch.setattr(models, "list_bundled_weights", list)


def good_file(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(GOOD_MAGIC + b"\0" * 16)
    return path


def make_widget(viewer, qtbot) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget.native)
    return widget


def recent_files(widget: SegmentWidget) -> list[Path]:
    return [p for p in widget.recent.choices if p is not None]


def combo_texts(combo) -> list[str]:
    return [combo.native.itemText(i) for i in range(combo.native.count())]


def test_widget_docks_from_the_manifest(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cellseg", "Segment")
    assert isinstance(widget, SegmentWidget)
    for name in ("image_layer", "weights", "recent", "device", "device_info", "card"):
        assert widget[name] is not None
    for name in ("tile_size", "overlap", "prob_threshold", "min_size", "progress", "status"):
        assert widget[name] is not None  # running is tested in test_segment_run.py
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.device.value == "auto"
    assert widget.device_info.value == f"runs on: {resolve_device('auto')}"


def test_image_picker_follows_layers(make_napari_viewer, qtbot, fake_cards) -> None:
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot)
    assert combo_texts(widget.image_layer) == []
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="not an image")
    b = viewer.add_image(np.zeros((8, 8)), name="b")
    assert combo_texts(widget.image_layer) == ["a", "b"]
    assert widget.selected_image is a
    a.name = "renamed"
    assert combo_texts(widget.image_layer) == ["renamed", "b"]
    assert widget.selected_image is a  # a rename keeps the selection
    viewer.layers.move(viewer.layers.index(b), 0)
    assert combo_texts(widget.image_layer) == ["b", "renamed"]
    viewer.layers.remove(a)
    assert combo_texts(widget.image_layer) == ["b"]
    assert widget.selected_image is b
    viewer.layers.remove(b)
    assert combo_texts(widget.image_layer) == []
    assert widget.selected_image is None


def test_bad_weight_file_shows_message(make_napari_viewer, qtbot, tmp_path, errors) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("this is not a weight file\n")
    with pytest.raises(WeightFileError) as info:
        models.read_card(bad)
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot)
    widget.weights.value = bad  # must not raise
    assert str(info.value) in widget.card.value
    assert "cannot be used" in widget.card.value
    assert errors == [str(info.value)]
    assert widget.model_card is None and widget.weights_path is None
    assert bad not in widget.recent.choices


def test_recent_files_persist(make_napari_viewer, qtbot, tmp_path, config_dir, fake_cards) -> None:
    first, second = good_file(tmp_path, "first.safetensors"), good_file(tmp_path, "second.pt")
    viewer = make_napari_viewer()
    w1 = make_widget(viewer, qtbot)
    assert recent_files(w1) == []
    w1.weights.value = first
    assert "fake card for first.safetensors" in w1.card.value
    w1.weights.value = second
    assert w1.recent.value == second.resolve()
    stored = json.loads((config_dir / sw.RECENT_FILE).read_text())
    assert stored == [str(second.resolve()), str(first.resolve())]

    w2 = make_widget(viewer, qtbot)
    assert recent_files(w2) == [second.resolve(), first.resolve()]
    assert w2.weights.value == second.resolve()  # the most recent is preselected
    assert w2.model_card.summary() in w2.card.value
    w2.recent.value = first.resolve()  # picking a recent file loads it
    assert w2.weights.value == first.resolve()
    assert w2.weights_path == first.resolve()
    assert "fake card for first.safetensors" in w2.card.value


def test_bundled_weights_preselected(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, fake_cards
) -> None:
    demo = good_file(tmp_path, "demo_unet.safetensors")
    monkeypatch.setattr(models, "list_bundled_weights", lambda: [demo])
    widget = make_widget(make_napari_viewer(), qtbot)
    assert widget.weights.value == demo.resolve()
    assert widget.recent.value == demo.resolve()
    assert "(demo)" in " ".join(combo_texts(widget.recent))
    assert "fake card for demo_unet" in widget.card.value


def test_broken_recent_store_is_ignored(make_napari_viewer, qtbot, config_dir, fake_cards) -> None:
    config_dir.mkdir()
    (config_dir / sw.RECENT_FILE).write_text("{not json")
    widget = make_widget(make_napari_viewer(), qtbot)
    assert recent_files(widget) == []
    assert widget.weights.value is None


def test_parameter_widgets_take_labels_tooltips_and_ranges_from_the_fields(qtbot) -> None:
    from napari_cellseg._napari._finetune_parts import parameter_fields
    from napari_cellseg._napari._segment_options import THRESHOLD_NAMES, SegmentOptions
    from napari_cellseg.params import PredictParams, TrainParams, field_info

    options = SegmentOptions()
    for name in THRESHOLD_NAMES:
        info, slider = field_info(PostprocessParams, name), options.thresholds[name]
        assert (slider.label, slider.tooltip) == (info.label, info.widget_options()["tooltip"])
        assert (slider.min, slider.max) == (info.min, info.max)
    tile = field_info(PredictParams, "tile_size")
    assert (options.tile_size.min, options.tile_size.max) == (tile.min, tile.max)
    assert options.tile_size.label == tile.label and options.tta.label == "Augment"
    assert options.min_size.min == field_info(PostprocessParams, "min_size").min
    fields = {w.name: w for w in parameter_fields()}
    for name in ("epochs", "batch_size", "patch_size", "samples_per_epoch", "val_fraction"):
        info = field_info(TrainParams, name)
        assert fields[name].label == info.label and fields[name].min == info.min
    assert fields["patch_size"].max == field_info(TrainParams, "patch_size").max


def test_invert_is_shared_and_comes_off_when_the_picked_card_inverts(
    make_napari_viewer, qtbot, tmp_path
) -> None:
    from dataclasses import replace

    from napari_cellseg._napari._session import session_for
    from napari_cellseg.io.samples import sample_data_dir

    demo = sample_data_dir() / "models" / "unet_dsb.safetensors"
    loaded = models.load_weights(demo)
    norm = {**loaded.card.normalisation, "invert": True}
    inverting = tmp_path / "inverting.safetensors"  # e.g. fine-tuned with Invert on
    models.save_weights(loaded.model, replace(loaded.card, normalisation=norm), inverting)
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot)
    session = session_for(viewer)
    widget["weights"].value = demo
    widget["invert"].value = True
    assert session.invert is True
    widget["weights"].value = inverting  # its card flips: the box comes off, not twice
    assert widget["invert"].value is False and session.invert is False
    widget["weights"].value = demo  # the box stays as the user left it
    assert widget["invert"].value is False
    widget["weights"].value = inverting  # an inverting card with the box off: left off
    assert widget["invert"].value is False
