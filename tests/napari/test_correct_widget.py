"""The Correct dock on the real fluorescence sample: undoable edits, edited ids, training set."""

from __future__ import annotations

import json
from pathlib import Path
from types import MethodType, SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from scipy import ndimage as ndi

from napari_cellseg._napari import correct_widget as cw
from napari_cellseg._napari._correct_helpers import camera
from napari_cellseg._napari._session import session_for
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.training.pairs import scan_training_folders

pytestmark = pytest.mark.gui

LABELS_NAME = "dsb_fluorescence · unet"


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(cw.helpers, "show_error", shown.append)  # failed actions
    return shown


@pytest.fixture
def infos(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(cw, "show_info", shown.append)
    return shown


@pytest.fixture
def setup(make_napari_viewer, qtbot, errors, infos):
    sample = get_sample("dsb_fluorescence")
    viewer = make_napari_viewer()
    (image,) = viewer.open(sample.image_path, plugin="napari", name="dsb_fluorescence")
    assert image.rgb and image.source.path is not None
    viewer.add_image(np.zeros((5, 5)), name="other")
    labels = viewer.add_labels(read_labels(sample.mask_path), name=LABELS_NAME)
    widget = cw.CorrectWidget(viewer)
    qtbot.addWidget(widget.native)
    return SimpleNamespace(viewer=viewer, image=image, labels=labels, widget=widget)


def press_d(layer) -> None:
    """Run what napari runs when 'd' is pressed over `layer` (its keymap bound to it)."""
    (func,) = [f for key, f in layer.keymap.items() if str(key).lower() == cw.DELETE_KEY]
    MethodType(func, layer)()


def largest_id(data: np.ndarray) -> int:
    return int(np.argmax(np.bincount(data.ravel())[1:]) + 1)


def test_picks_labels_and_matching_image(setup) -> None:
    w = setup.widget
    assert w.labels_layer.value is setup.labels
    assert w.image_layer.value is setup.image  # "<image> · <model>" names its image
    second = setup.viewer.add_labels(np.zeros((5, 5), np.uint8), name="other · x")
    setup.viewer.layers.selection.active = second
    assert w.labels_layer.value is second
    assert w.image_layer.value.name == "other"
    setup.viewer.layers.remove(second)
    assert w.labels_layer.value is setup.labels


def test_delete_under_cursor_and_undo(setup, errors) -> None:
    layer, w, viewer = setup.labels, setup.widget, setup.viewer
    before = layer.data.copy()
    ys, xs = np.nonzero(before == 7)
    viewer.cursor.position = (float(ys[0]), float(xs[0]))
    press_d(layer)
    assert not (layer.data == 7).any()
    assert np.array_equal(layer.data[before != 7], before[before != 7])
    assert w.edited_ids() == {7}
    layer.undo()
    assert np.array_equal(layer.data, before)
    layer.redo()
    assert not (layer.data == 7).any()
    viewer.cursor.position = (0.0, 0.0) if before[0, 0] == 0 else (-5.0, -5.0)
    press_d(layer)
    assert errors and "no object there" in errors[-1]


def test_delete_selected_merge_and_pick(setup, errors) -> None:
    layer, w = setup.labels, setup.widget
    before = layer.data.copy()
    layer.selected_label = 3
    w.delete_selected()
    assert not (layer.data == 3).any()
    w.merge_ids.value = "12, 5"
    w.merge()
    assert not (layer.data == 12).any()
    assert np.array_equal(layer.data == 5, (before == 5) | (before == 12))
    assert layer.selected_label == 5
    assert w.merge_ids.value == ""
    layer.undo()
    assert np.array_equal(layer.data == 12, before == 12)
    w.pick.value = True
    assert w._picker.attached_to(layer)
    for object_id in (20, 21, 20):
        ys, xs = np.nonzero(before == object_id)
        w.pick_at((float(ys[0]), float(xs[0])))
    assert w.merge_ids.value == "20, 21"
    w.pick.value = False
    assert not w._picker.attached_to(layer)
    w.merge_ids.value = "20, x"
    w.merge()
    assert "not an object id: x" in errors[-1]
    assert w.edited_ids() == {3, 5, 12}
    assert w.edited_info.value == "3: 3, 5, 12"


def test_split_with_seed_points(setup, infos) -> None:
    layer, w, viewer = setup.labels, setup.widget, setup.viewer
    before = layer.data.copy()
    target = largest_id(before)
    w.split()  # no seeds yet: adds the seeds layer and explains
    assert cw.SEEDS_LAYER in viewer.layers
    assert "Click two or more seeds" in infos[-1]
    core = ndi.binary_erosion(before == target, iterations=3)
    ys, xs = np.nonzero(core)
    axis = ys if np.ptp(ys) >= np.ptp(xs) else xs
    seeds = [(ys[np.argmin(axis)], xs[np.argmin(axis)]), (ys[np.argmax(axis)], xs[np.argmax(axis)])]
    viewer.layers[cw.SEEDS_LAYER].data = np.array(seeds, dtype=float)
    w.split()
    new_id = int(before.max()) + 1
    assert (layer.data == target).sum() > 10 and (layer.data == new_id).sum() > 10
    assert ((layer.data == target) | (layer.data == new_id)).sum() == (before == target).sum()
    assert np.array_equal(layer.data[before != target], before[before != target])
    assert len(viewer.layers[cw.SEEDS_LAYER].data) == 0
    assert w.edited_ids() == {target, new_id}
    layer.undo()
    assert np.array_equal(layer.data, before)


def test_global_edits_next_free_and_jump(setup, infos) -> None:
    layer, w, viewer = setup.labels, setup.widget, setup.viewer
    before = layer.data.copy()
    w.next_free_label()
    assert layer.selected_label == int(before.max()) + 1
    assert layer.mode == "paint"
    w.min_size.value = 60
    w.remove_small()
    sizes = np.bincount(before.ravel())
    small = {i for i in range(1, sizes.size) if 0 < sizes[i] < 60}
    assert small and not np.isin(layer.data, list(small)).any()
    assert infos[-1].startswith(f"Removed {len(small)} object")
    layer.undo()
    assert np.array_equal(layer.data, before)
    layer.data_setitem(np.nonzero(before == 2), 0)  # leave a gap in the ids
    w.relabel()
    assert set(np.unique(layer.data)) == set(range(int(before.max())))
    relabelled = layer.data.copy()
    w.fill_holes()  # the sample has no holes: nothing changes, nothing breaks
    assert np.array_equal(layer.data, relabelled)
    camera(viewer).center = (0, 0)
    w.jump_id.value = 30
    w.jump_to()
    ys, xs = np.nonzero(layer.data == 30)
    centre = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2)
    assert np.allclose(camera(viewer).center[-2:], centre)
    assert layer.selected_label == 30


def test_fill_holes_fills_them_and_undo_restores_them(setup, errors) -> None:
    layer, w = setup.labels, setup.widget
    sizes = np.bincount(layer.data.ravel())
    big = [int(i) for i in np.argsort(sizes[1:])[-3:] + 1]  # three of the largest objects
    whole = layer.data.copy()
    holey = whole.copy()
    for object_id in big:  # a hole in the middle of each, well inside the object
        inner = ndi.binary_erosion(whole == object_id, iterations=3)
        ys, xs = np.nonzero(inner)
        y, x = int(np.median(ys)), int(np.median(xs))
        assert inner[y - 1 : y + 2, x - 1 : x + 2].all()
        holey[y - 1 : y + 2, x - 1 : x + 2] = 0
    layer.data = holey
    w.fill_holes()
    assert errors == []
    assert np.array_equal(layer.data, whole)  # each hole takes its object's id
    assert w.edited_ids() >= set(big)
    layer.undo()
    assert np.array_equal(layer.data, holey)


def test_relabel_renumbers_and_undo_restores_the_ids(setup, errors) -> None:
    layer, w = setup.labels, setup.widget
    gappy = layer.data.copy()
    gappy[gappy == 2] = 0
    gappy[gappy == 5] = 0
    layer.data = gappy
    w.relabel()
    assert errors == []
    after = layer.data.copy()
    assert set(np.unique(after)) == set(range(len(np.unique(gappy))))  # 0 and 1..N
    pairs = np.unique(np.stack([gappy.ravel(), after.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(gappy))  # one new id per old id: same objects
    assert np.array_equal(after > 0, gappy > 0)
    layer.undo()
    assert np.array_equal(layer.data, gappy)


def test_paint_tools_are_tracked_and_autosaved(setup, qtbot, config_dir) -> None:
    layer, w = setup.labels, setup.widget
    ys, xs = np.nonzero(layer.data == 9)
    layer.selected_label = 44
    layer.paint((ys[0], xs[0]), 44)  # napari's own brush
    assert {9, 44} <= w.edited_ids()
    autosave = config_dir / ".autosave" / f"{LABELS_NAME}_labels.tif"
    qtbot.waitUntil(autosave.exists, timeout=5000)
    assert np.array_equal(read_labels(autosave), layer.data)


def test_add_to_training_set(setup, tmp_path: Path, infos) -> None:
    layer, w, viewer = setup.labels, setup.widget, setup.viewer
    session = session_for(viewer)
    session.add_prediction(LABELS_NAME, SimpleNamespace(card=SimpleNamespace(name="unet-demo")))
    folder = tmp_path / "train set"
    w.add_to_training_set()  # no folder yet
    layer.selected_label = 4
    w.delete_selected()
    w.folder.value = folder
    assert session.training_set == folder
    w.add_to_training_set()
    pairs = scan_training_folders([folder])
    assert [p.name for p in pairs] == ["dsb_fluorescence"]
    assert np.array_equal(read_labels(pairs[0].mask_path), layer.data)
    (entry,) = json.loads((folder / "manifest.json").read_text())
    assert entry["edited_object_ids"] == [4]
    assert entry["model"] == "unet-demo"
    assert entry["source"] == str(get_sample("dsb_fluorescence").image_path)
    n = len(np.unique(layer.data)) - 1
    assert entry["n_objects"] == n
    assert infos[-1] == f"Added dsb_fluorescence to {folder} ({n} objects)"
    other = tmp_path / "elsewhere"
    session.training_set = other
    assert w.folder.value == other
    w.add_to_training_set()
    assert (other / "images" / "dsb_fluorescence.tif").exists()
    w.autosave_now()  # autosaves follow the training-set folder
    assert (other / ".autosave" / f"{LABELS_NAME}_labels.tif").exists()


def test_add_only_the_region_around_the_edits(setup, tmp_path: Path, infos, errors) -> None:
    layer, w = setup.labels, setup.widget
    folder = tmp_path / "set"
    w.folder.value = folder
    w.checked.value = cw.helpers.CHECKED_EDITS
    w.add_to_training_set()  # nothing edited yet
    assert errors[-1].startswith("no edits on this plane: correct some objects first")
    ys, xs = np.nonzero(layer.data == 4)
    layer.selected_label = 4
    w.delete_selected()
    w.margin.value = 5
    w.add_to_training_set()
    (pair,) = scan_training_folders([folder])
    region = read_labels(pair.region_path) > 0
    expected = np.zeros(layer.data.shape, bool)
    expected[max(0, ys.min() - 5) : ys.max() + 1 + 5, max(0, xs.min() - 5) : xs.max() + 1 + 5] = (
        True
    )
    assert np.array_equal(region, expected)  # the deleted object's box and its margin
    (entry,) = json.loads((folder / "manifest.json").read_text())
    assert entry["region"] == "regions/dsb_fluorescence.tif"
    assert "checked region" in infos[-1]


def test_add_only_the_drawn_rectangles(setup, tmp_path: Path, infos, errors) -> None:
    w, viewer = setup.widget, setup.viewer
    w.folder.value = tmp_path / "set"
    w.checked.value = cw.helpers.CHECKED_RECTANGLES
    shapes = viewer.layers[cw.helpers.REGION_LAYER]
    w.add_to_training_set()  # no rectangle yet
    assert errors[-1].startswith("no rectangle over the image in 'checked region'")
    shapes.add_rectangles(np.array([[10, 20], [40, 60]]))
    w.add_to_training_set()
    (pair,) = scan_training_folders([tmp_path / "set"])
    region = read_labels(pair.region_path) > 0
    assert region[10:41, 20:61].all() and region.sum() == 31 * 41
    w.checked.value = cw.helpers.CHECKED_WHOLE
    w.add_to_training_set()  # another pair, counting the whole image
    assert sorted(p.region_path is None for p in scan_training_folders([tmp_path / "set"])) == [
        False,
        True,
    ]
