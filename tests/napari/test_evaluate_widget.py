"""The Evaluate dock: metrics of labels layers and folders, two-model comparison, CSV export."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from skimage.segmentation import find_boundaries

from napari_cellseg._napari import evaluate_widget as ew
from napari_cellseg._napari._metrics_table import METRIC_ROWS
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.evaluate_widget import EvaluateWidget
from napari_cellseg.io.images import read_labels, write_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.labels.metrics import METRIC_KEYS
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(ew, "show_error", shown.append)
    monkeypatch.setattr(ew, "show_info", lambda message: None)
    return shown


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    return np.asarray(read_labels(get_sample("dsb_fluorescence").mask_path))


def eroded(labels: np.ndarray, times: int = 2) -> np.ndarray:
    out = labels.copy()
    for _ in range(times):
        out[find_boundaries(out, mode="inner")] = 0
    return out


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    folder = tmp_path_factory.mktemp("models")
    paths = []
    for seed, name in ((1, "first"), (2, "second")):
        torch.manual_seed(seed)
        path = folder / f"{name}.safetensors"
        card = ModelCard.for_model("unet", TINY_UNET)
        save_weights(build_model("unet", **TINY_UNET), card, path)
        paths.append(path)
    return paths[0], paths[1]


def make_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = EvaluateWidget(viewer)
    qtbot.addWidget(widget.native)
    return viewer, widget


def wait_done(qtbot, widget: EvaluateWidget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def cancel_when(widget: EvaluateWidget, marker: str) -> list[int]:
    """Press Cancel at the first progress message holding ``marker``; the progress seen."""
    seen: list[int] = []

    def on_progress(event) -> None:
        seen.append(event.done)
        if marker in event.message and widget.cancel.enabled:
            widget.cancel_run()

    widget._worker.yielded.connect(on_progress)
    return seen


def column(widget: EvaluateWidget, title: str) -> dict[str, str]:
    value = widget.table.value
    j = value["columns"].index(title)
    return {key: row[j] for key, row in zip(value["index"], value["data"], strict=True)}


def test_labels_vs_itself_and_vs_eroded(make_napari_viewer, qtbot, gt, errors) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    truth = viewer.add_labels(gt, name="truth")
    same = viewer.add_labels(gt.copy(), name="same")
    smaller = viewer.add_labels(eroded(gt), name="eroded")
    assert list(widget.table.value["index"]) == list(METRIC_ROWS)
    widget.ground_truth_layer.value = truth
    widget.prediction_layer.value = same
    widget.evaluate.clicked.emit()
    wait_done(qtbot, widget)
    assert errors == []
    assert column(widget, "same")["dsb_ap"] == "1.000"
    assert widget.results["same"]["dsb_ap"] == 1.0
    assert widget.status.value == "same vs truth"
    widget.prediction_layer.value = smaller
    widget.run_evaluation()
    wait_done(qtbot, widget)
    assert list(widget.table.value["columns"]) == ["eroded"]
    assert widget.results["eroded"]["dsb_ap"] < 1.0
    assert float(column(widget, "eroded")["pixel_iou"]) < 1.0


def test_layer_choices_follow_the_layer_list(make_napari_viewer, qtbot, gt) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    assert widget.prediction_layer.choices == ()
    labels = viewer.add_labels(gt, name="a")
    viewer.add_image(np.zeros((4, 4)), name="img")
    assert widget.prediction_layer.choices == (labels,)
    assert [ly.name for ly in widget.image_layer.choices] == ["img"]
    labels.name = "renamed"
    assert widget.prediction_layer.native.itemText(0) == "renamed"
    viewer.layers.remove(labels)
    assert widget.prediction_layer.choices == ()


def test_folders_and_a_shape_mismatch(make_napari_viewer, qtbot, gt, tmp_path, errors) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    write_labels(gt_dir / "cells.tif", gt)
    write_labels(pred_dir / "cells.tif", eroded(gt))
    widget.native.show()
    widget.source.value = "folders"
    assert not widget.prediction_layer.visible and widget.prediction_folder.visible
    widget.prediction_folder.value = pred_dir
    widget.ground_truth_folder.value = gt_dir
    widget.run_evaluation()
    wait_done(qtbot, widget)
    assert errors == []
    assert widget.results["pred"]["n_images"] == 1
    assert 0.0 < widget.results["pred"]["dsb_ap"] < 1.0
    widget.source.value = "layers"
    viewer.add_labels(gt, name="truth")
    viewer.add_labels(gt[:100], name="cropped")
    widget.ground_truth_layer.value = viewer.layers["truth"]
    widget.prediction_layer.value = viewer.layers["cropped"]
    widget.run_evaluation()
    wait_done(qtbot, widget)
    assert len(errors) == 1 and "shape" in errors[0]  # a message, not a traceback


def test_compare_two_models_adds_two_layers(
    make_napari_viewer, qtbot, gt, two_models, errors
) -> None:
    from napari_cellseg._napari._sample_data import load_sample

    viewer, widget = make_widget(make_napari_viewer, qtbot)
    for data, kwargs, kind in load_sample("dsb_fluorescence"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image = next(ly for ly in viewer.layers if ly._type_string == "image")
    truth = next(ly for ly in viewer.layers if ly._type_string == "labels")
    n_layers = len(viewer.layers)
    widget.image_layer.value = image
    widget.ground_truth_layer.value = truth
    widget.weights_a.value, widget.weights_b.value = two_models
    widget.device.value = "cpu"
    widget.compare.clicked.emit()
    assert widget.running and not widget.compare.enabled
    wait_done(qtbot, widget)
    assert errors == []
    assert list(widget.table.value["columns"]) == ["A: first", "B: second"]
    for title in ("A: first", "B: second"):
        assert set(METRIC_KEYS) <= set(widget.results[title])
        assert column(widget, title)["n_images"] == "1"
    assert len(viewer.layers) == n_layers + 2
    new = [ly for ly in viewer.layers][n_layers:]
    assert all(ly._type_string == "labels" and ly.data.shape == gt.shape for ly in new)
    assert {ly.name for ly in new} == {f"{image.name} · A: first", f"{image.name} · B: second"}
    assert set(session_for(viewer).predictions) == {ly.name for ly in new}


def test_export_csv(make_napari_viewer, qtbot, gt, tmp_path, errors) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    assert widget.export_csv() is None and "nothing to export" in errors[-1]
    viewer.add_labels(gt, name="truth")
    viewer.add_labels(eroded(gt), name="eroded")
    widget.ground_truth_layer.value = viewer.layers["truth"]
    widget.prediction_layer.value = viewer.layers["eroded"]
    widget.run_evaluation()
    wait_done(qtbot, widget)
    widget.export_path.value = tmp_path / "out" / "metrics"
    written = widget.export_csv()
    assert written == tmp_path / "out" / "metrics.csv"
    rows = list(csv.reader(written.open(encoding="utf-8")))
    assert rows[0] == ["metric", "eroded"]
    assert [r[0] for r in rows[1:]] == list(METRIC_ROWS)
    assert float(rows[1][1]) == pytest.approx(widget.results["eroded"]["dsb_ap"])
    assert list(tmp_path.joinpath("out").iterdir()) == [written]  # no temporary file left


def _compare_folder(tmp_path: Path, gt: np.ndarray, n: int) -> tuple[Path, Path]:
    import tifffile

    from napari_cellseg.io.images import read_image

    image = np.asarray(read_image(get_sample("dsb_fluorescence").image_path).data)
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truth.mkdir()
    for i in range(n):
        tifffile.imwrite(images / f"img{i}.tif", image)
        write_labels(truth / f"img{i}.tif", gt)
    return images, truth


def start_folder_comparison(
    widget: EvaluateWidget, folders: tuple[Path, Path], models: tuple[Path, Path]
) -> None:
    widget.source.value = "folders"
    widget.image_folder.value, widget.ground_truth_folder.value = folders
    widget.weights_a.value, widget.weights_b.value = models
    widget.device.value = "cpu"
    widget.run_comparison()


def test_compare_folders_shows_progress_and_adds_no_layer(
    make_napari_viewer, qtbot, gt, two_models, tmp_path, errors
) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    start_folder_comparison(widget, _compare_folder(tmp_path, gt, 2), two_models)
    assert widget.running and widget.cancel.enabled
    wait_done(qtbot, widget)
    assert errors == [] and len(viewer.layers) == 0
    assert widget.results["A: first"]["n_images"] == 2
    assert widget.progress.value == widget.progress.max  # full
    assert not widget.cancel.enabled and widget.compare.enabled


def test_cancel_stops_a_comparison_and_keeps_the_table(
    make_napari_viewer, qtbot, gt, two_models, tmp_path, errors
) -> None:
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    start_folder_comparison(widget, _compare_folder(tmp_path, gt, 6), two_models)
    seen = cancel_when(widget, "(2/6)")  # after the first image
    wait_done(qtbot, widget)
    assert errors == [] and widget.results == {} and len(viewer.layers) == 0
    assert widget.status.value == "cancelled: nothing was added"
    assert max(seen) < 1000  # stopped before the end
    assert widget.compare.enabled and not widget.cancel.enabled


def test_tune_model_a_then_save_and_use_the_tuned_copy(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, errors
) -> None:
    from known_output_model import known_model, two_cells
    from napari_cellseg import models

    monkeypatch.setattr(models, "load_weights", lambda path, **kw: known_model())
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"stand-in: loading gives the network with known output")
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    image, truth = two_cells()
    widget.image_layer.value = viewer.add_image(image, name="cells")
    widget.ground_truth_layer.value = viewer.add_labels(truth, name="truth")
    widget.weights_a.value = weights
    widget.device.value = "cpu"
    assert not widget.save_tuned.enabled

    widget.run_tuning()
    assert widget.running and not widget.tune.enabled and widget.cancel.enabled
    wait_done(qtbot, widget)
    assert errors == []
    before, after = "A as it is", "A tuned"
    assert list(widget.table.value["columns"]) == [before, after]
    assert widget.results[before]["dsb_ap"] == 0.0  # the default seeds merge the two cells
    assert widget.results[after]["dsb_ap"] > 0.8
    changed = widget._tuned.result.changed
    assert changed["boundary_threshold"] <= 0.3
    status = widget.status.value
    assert status.startswith("mine.safetensors: best of 90 settings: ")
    assert "DSB AP 0.000 →" in status and "on this image; judge it on others" in status
    assert widget.save_tuned.enabled and len(viewer.layers) == 2  # tuning adds no layer

    widget.save_tuned.clicked.emit()
    wait_done(qtbot, widget)
    saved = tmp_path / "mine-tuned.safetensors"
    assert session_for(viewer).weights == saved
    card = models.read_card(saved)
    assert card.postprocess == changed and card.provenance["postprocess_tuning"]["data"] == "cells"
    assert not widget.save_tuned.enabled  # saved once
    assert weights.read_bytes().startswith(b"stand-in")  # model A itself is untouched

    widget.run_tuning()  # a second copy never replaces the first
    wait_done(qtbot, widget)
    widget.save_tuned_model()
    wait_done(qtbot, widget)
    assert session_for(viewer).weights == tmp_path / "mine-tuned-2.safetensors"
    assert saved.exists() and errors == []


def test_cancel_stops_a_tuning_and_offers_nothing_to_save(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, errors
) -> None:
    import tifffile

    from known_output_model import known_model, two_cells
    from napari_cellseg import models

    monkeypatch.setattr(models, "load_weights", lambda path, **kw: known_model())
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truth.mkdir()
    image, labels = two_cells()
    for i in range(6):
        tifffile.imwrite(images / f"cells{i}.tif", image)
        write_labels(truth / f"cells{i}.tif", labels)
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"stand-in")
    _viewer, widget = make_widget(make_napari_viewer, qtbot)
    widget.source.value = "folders"
    widget.image_folder.value, widget.ground_truth_folder.value = images, truth
    widget.weights_a.value = weights
    widget.device.value = "cpu"
    widget.run_tuning()
    seen = cancel_when(widget, "segmenting image 3 of 6")  # after two images
    wait_done(qtbot, widget)
    assert errors == [] and widget.results == {}
    assert widget.status.value == "cancelled: nothing was added"
    assert max(seen) < 1000 and not widget.save_tuned.enabled  # thousandths
    assert widget.tune.enabled and not list(tmp_path.glob("*-tuned*"))


def test_compare_and_tune_use_the_segment_tabs_diameter_and_invert(
    make_napari_viewer, qtbot, gt, two_models, errors, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_cellseg._napari._evaluate_jobs import Comparison
    from napari_cellseg.errors import CellsegError

    received: dict[str, object] = {}

    def fake_compare(
        weights, images, device, *, keep_predictions=True, diameter=None, invert=False
    ):
        received["compare"], received["compare_invert"] = diameter, invert
        yield from ()
        return Comparison(metrics={title: {"n_images": 1} for title in weights})

    def fake_tune(weights, images, device, diameter=None, invert=False):
        received["tune"], received["tune_invert"] = diameter, invert
        yield from ()
        raise CellsegError("stopped by the test")

    monkeypatch.setattr(ew, "iter_compare", fake_compare)
    monkeypatch.setattr(ew, "iter_tune", fake_tune)
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    image = viewer.add_image(np.zeros(gt.shape, np.float32), name="img", scale=(0.5, 0.5))
    truth = viewer.add_labels(gt, name="truth")
    widget.image_layer.value, widget.ground_truth_layer.value = image, truth
    widget.weights_a.value, widget.weights_b.value = two_models
    session_for(viewer).share_params(None, 33.0)
    widget.compare.clicked.emit()
    wait_done(qtbot, widget)
    assert received["compare"] == 33.0 and errors == []
    assert received["compare_invert"] is False
    session_for(viewer).share_params(None, "12um", None, True)  # µm: the layer's scale converts it
    widget.tune.clicked.emit()
    wait_done(qtbot, widget)
    assert received["tune"] == pytest.approx(24.0) and received["tune_invert"] is True
    assert errors == ["stopped by the test"]


def test_compare_segments_the_layers_chosen_channels(
    make_napari_viewer, qtbot, two_models, errors
) -> None:
    """A C, Y, X layer is compared as the Segment tab segments it: its stored choice."""
    from napari_cellseg._napari._channels import ChannelChoice, store_choice
    from napari_cellseg.inference import predict
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import PredictParams

    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (2, 64, 80), np.uint8)
    data[1, 20:40, 20:50] = 250
    viewer, widget = make_widget(make_napari_viewer, qtbot)
    image = viewer.add_image(data, name="two channels")
    store_choice(image.metadata, ChannelChoice(axis=0, signal=1, helper=0))
    truth = viewer.add_labels((data[1] > 200).astype(np.uint16), name="truth")
    widget.image_layer.value, widget.ground_truth_layer.value = image, truth
    widget.weights_a.value, widget.weights_b.value = two_models
    widget.device.value = "cpu"
    _, (chosen,) = widget._comparison_images()
    assert (chosen.axes, chosen.signal, chosen.helper) == ("CYX", 1, 0)
    widget.compare.clicked.emit()
    wait_done(qtbot, widget)
    assert errors == []
    added = viewer.layers["two channels · A: first"]
    assert added.data.shape == (64, 80)  # no channel axis in the result
    params = PredictParams(axes="CYX", channels=(1, 0, 1), device="cpu")
    expected = predict(data, load_weights(two_models[0]), params).labels
    np.testing.assert_array_equal(added.data, expected)

    store_choice(image.metadata, ChannelChoice(axis=0, signal=5))  # no longer fits
    widget.compare.clicked.emit()
    assert not widget.running and "signal channel 5 is out of range" in errors[-1]
