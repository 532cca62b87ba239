"""The whole cycle through the dock, on the real fluorescence sample with a tiny CPU U-Net.

Segment → Correct (delete, merge, split) → add to a training set → Fine-tune (stop after the
first epoch of three, resume, finish) → use the new weights → Segment again → Evaluate.

The tiny U-Net is random with a blank head (background everywhere), so its first
segmentation finds nothing and any epoch that finds cells beats it: the fine-tuned file is
a trained epoch, not the base kept (see ``TrainingFinished.kept_base``). As a user would
correct a model's output, the corrections are made on a copy
of the ground truth opened as ``"<image> · corrected"`` (the Correct dock pairs it with the
image by name); the untouched ground truth stays for Evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Labels
from scipy import ndimage as ndi

from napari_cellseg import models
from napari_cellseg._napari import correct_widget as cw
from napari_cellseg._napari import evaluate_widget as ew
from napari_cellseg._napari import finetune_widget as fw
from napari_cellseg._napari import segment_widget as sw
from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.dock import CellsegDock
from napari_cellseg.events import EpochEnd
from napari_cellseg.inference import predict
from napari_cellseg.io.images import read_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.labels.metrics import dsb_ap, pixel_dice
from napari_cellseg.models import ModelCard, build_model, save_weights
from napari_cellseg.training.checkpoints import checkpoint_path_for
from napari_cellseg.training.pairs import scan_training_folders
from tiny_models import TINY_UNET

pytestmark = pytest.mark.gui

TIMEOUT_MS = 120_000
IMAGE = "dsb_fluorescence"


@pytest.fixture(autouse=True)
def shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A private config dir, no bundled demo weights, notifications recorded (not shown)."""
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(models, "list_bundled_weights", list)
    shown: dict[str, list[str]] = {"error": [], "info": [], "warning": []}
    for module in (sw, cw, fw, ew):
        for kind in shown:
            if hasattr(module, f"show_{kind}"):
                monkeypatch.setattr(module, f"show_{kind}", shown[kind].append)
    return shown


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    model = build_model("unet", **TINY_UNET)
    with torch.no_grad():  # background everywhere: any epoch that finds cells beats it
        model.segmentation_head[0].weight.zero_()
        model.segmentation_head[0].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    # the sample's own object size (median equivalent diameter 19.3 px): the fine-tune
    # trains and validates at the image's scale
    card = ModelCard.for_model("unet", TINY_UNET, object_diameter=19.3)
    save_weights(model, card, path)
    return path


def split_seeds(mask: np.ndarray) -> list[tuple[int, int]]:
    """Two seeds at the far ends of an object's core (along its longer extent)."""
    core = ndi.binary_erosion(mask, iterations=3)
    ys, xs = np.nonzero(core)
    axis = ys if np.ptp(ys) >= np.ptp(xs) else xs
    lo, hi = int(np.argmin(axis)), int(np.argmax(axis))
    return [(int(ys[lo]), int(xs[lo])), (int(ys[hi]), int(xs[hi]))]


def segment(dock: CellsegDock, qtbot) -> Labels:
    """Run the Segment tab to its end and return the labels layer it wrote."""
    worker = dock.segment.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not dock.segment.running, timeout=TIMEOUT_MS)
    prediction = dock.segment.last_prediction
    assert prediction is not None, dock.segment.status.value
    name = f"{IMAGE} · {prediction.card.name}"
    layer = dock.viewer.layers[name]
    assert isinstance(layer, Labels)
    assert np.array_equal(layer.data, prediction.labels)
    return layer


def test_segment_correct_finetune_resegment_evaluate(
    make_napari_viewer, qtbot, tmp_path, tiny_weights, shown
) -> None:
    sample = get_sample(IMAGE)
    viewer = make_napari_viewer()
    (image,) = viewer.open(sample.image_path, plugin="napari", name=IMAGE)
    gt_data = np.asarray(read_labels(sample.mask_path))
    gt = viewer.add_labels(gt_data, name="ground truth", opacity=0.5)
    dock = CellsegDock(viewer)
    qtbot.addWidget(dock)
    session = session_for(viewer)

    # -- Segment with the tiny model ------------------------------------------------------
    seg = dock.segment
    seg.image_layer.value = image
    seg.weights.value = tiny_weights
    assert session.weights == tiny_weights.resolve()
    seg.tile_size.value, seg.overlap.value = 128, 16
    # no rescaling in either run: the two network outputs are compared on the same grid (a
    # 3-epoch model's one big blob would make "auto" shrink the image to a few pixels)
    seg.diameter.mode.value = "off"
    first = segment(dock, qtbot)
    assert first.metadata["weights"] == str(tiny_weights.resolve())
    first_prediction = seg.last_prediction

    # -- Correct: delete, merge, split on a copy of the ground truth ----------------------
    corrected = viewer.add_labels(gt_data.copy(), name=f"{IMAGE} · corrected")
    cor = dock.correct
    cor.labels_layer.value = corrected
    assert cor.image_layer.value is image  # paired by the "<image> · …" name
    before = corrected.data.copy()
    sizes = np.bincount(before.ravel())
    sizes[0] = 0
    by_size = [int(i) for i in np.argsort(sizes)[::-1] if sizes[i] > 0]
    target = by_size[0]  # the largest object is split
    deleted = by_size[1]
    merge_a, merge_b = sorted(by_size[2:4])

    corrected.selected_label = deleted
    cor.delete_button.clicked.emit()
    assert not (corrected.data == deleted).any()

    cor.merge_ids.value = f"{merge_a}, {merge_b}"
    cor.merge_button.clicked.emit()
    assert not (corrected.data == merge_b).any()
    assert np.array_equal(corrected.data == merge_a, (before == merge_a) | (before == merge_b))

    cor.split_button.clicked.emit()  # adds the seeds layer (nothing to split yet)
    assert cw.SEEDS_LAYER in viewer.layers
    viewer.layers[cw.SEEDS_LAYER].data = np.array(split_seeds(before == target), dtype=float)
    cor.split_button.clicked.emit()
    new_id = int(before.max()) + 1
    assert (corrected.data == target).sum() > 10 and (corrected.data == new_id).sum() > 10
    split_area = ((corrected.data == target) | (corrected.data == new_id)).sum()
    assert split_area == (before == target).sum()
    edited = {deleted, merge_a, merge_b, target, new_id}
    assert cor.edited_ids() == edited
    assert shown["error"] == []

    # -- Add to a training set (twice: one image for training, one for validation) -------
    folder = tmp_path / "training set"
    cor.folder.value = folder
    assert session.training_set == folder
    cor.add_button.clicked.emit()
    cor.add_button.clicked.emit()
    assert shown["error"] == []
    pairs = scan_training_folders([folder])
    assert len(pairs) == 2
    for pair in pairs:
        assert pair.image_path.parent == folder / "images"
        assert pair.mask_path.parent == folder / "masks"
        assert np.array_equal(read_labels(pair.mask_path), corrected.data)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [e["name"] for e in manifest] == [IMAGE, f"{IMAGE}_2"]
    for entry in manifest:
        assert entry["edited_object_ids"] == sorted(edited)
        assert entry["source"] == str(sample.image_path)

    # -- Fine-tune: 3 epochs, stop after the first, resume to the end ---------------------
    ft = dock.finetune
    assert ft.training_set.value == folder  # followed the session
    assert ft.base_weights.value == tiny_weights.resolve()
    ft.epochs.value = 3
    ft.patch_size.value = 64
    ft.batch_size.value = 2
    ft.samples_per_epoch.value = 8
    ft.val_fraction.value = 0.5
    ft.device.value = "cpu"
    ft.learning_rate.value = 0.05  # the tiny random model must learn something in 3 epochs
    ft.start.clicked.emit()
    assert ft.running
    out = Path(ft.output.value)
    assert out.parent == folder / "models"

    seen: list[int] = []

    def stop_after_first_epoch(event: object) -> None:
        if isinstance(event, EpochEnd):
            seen.append(event.epoch)
            if event.epoch == 1:
                ft.stop.clicked.emit()

    ft.worker.yielded.connect(stop_after_first_epoch)
    qtbot.waitUntil(lambda: not ft.running, timeout=TIMEOUT_MS)
    assert ft.result is None and checkpoint_path_for(out).is_file()
    assert ft.status.value.startswith("stopped — last checkpoint kept")
    assert 1 in seen and 3 not in seen
    assert ft.resume.enabled

    ft.resume.clicked.emit()
    qtbot.waitUntil(lambda: not ft.running, timeout=TIMEOUT_MS)
    assert shown["error"] == []
    result = ft.result
    assert result is not None and result.epochs_run == 3
    assert Path(result.weights_path) == out and out.is_file()
    assert [h["epoch"] for h in result.history if h["epoch"] > 0] == [1, 2, 3]
    assert result.baseline_metrics["n_images"] == 1  # one validation image
    assert result.best_epoch >= 1 and not result.kept_base  # an epoch beat the blank base

    # -- Use the new weights: the session and the Segment tab follow ----------------------
    asked: list[str] = []
    ft.confirm = lambda message: asked.append(message) or True  # a worse model is fine here
    assert ft.use_weights.enabled
    ft.use_weights.clicked.emit()
    assert session.weights == out
    assert seg.weights.value == out.resolve() and seg.model_card is not None
    assert len(asked) == int(ft.outcome.worse)

    # -- Segment again with the fine-tuned model ------------------------------------------
    second = segment(dock, qtbot)
    assert second.metadata["weights"] == str(out.resolve())
    assert session.predictions[second.name] is seg.last_prediction
    # a random and a 3-epoch model may both find one big blob: compare the network outputs
    new_raw, old_raw = seg.last_prediction.raw[0], first_prediction.raw[0]
    assert not np.allclose(np.asarray(new_raw, float), np.asarray(old_raw, float))

    # -- Evaluate the new prediction against the ground truth -----------------------------
    ev = dock.evaluate
    ev.source.value = "layers"
    ev.prediction_layer.value = second
    ev.ground_truth_layer.value = gt
    ev.evaluate.clicked.emit()
    qtbot.waitUntil(lambda: not ev.running, timeout=TIMEOUT_MS)
    assert shown["error"] == []
    assert list(ev.results) == [second.name]
    metrics = ev.results[second.name]
    assert metrics["n_images"] == 1 and 0.0 <= metrics["dsb_ap"] <= 1.0
    table = ev.table.value
    assert list(table["columns"]) == [second.name]
    cells = dict(zip(table["index"], (row[0] for row in table["data"]), strict=True))
    assert cells["n_images"] == "1" and cells["dsb_ap"] == f"{metrics['dsb_ap']:.3f}"
    assert ev.status.value == f"{second.name} vs ground truth"
    # the numbers are those of the layers compared (not just in range)
    assert metrics["dsb_ap"] == pytest.approx(dsb_ap(gt_data, second.data))
    assert metrics["pixel_dice"] == pytest.approx(pixel_dice(gt_data, second.data))

    # -- The second segmentation is the fine-tuned model's, and finds the cells ------------
    used = seg.last_prediction.params
    assert (used.tile_size, used.overlap) == (128, 16)
    again = predict(np.asarray(image.data), out, used).labels  # the core, outside the dock
    assert np.array_equal(second.data, again)
    assert second.data.max() >= 1  # the base model found nothing; the fine-tuned one does
    assert first_prediction.labels.max() == 0
    assert ((second.data > 0) & (corrected.data > 0)).any()  # where the corrected cells are
