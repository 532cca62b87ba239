"""The Segment tab's "Export model (bioimage.io)…": a package written in a worker, re-readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("bioimageio.spec")

import torch

from napari_cellseg._napari import _model_export as me
from napari_cellseg._napari import segment_widget as sw
from napari_cellseg._napari.segment_widget import SegmentWidget
from napari_cellseg.models import ModelCard, build_model, load_weights, read_card, save_weights

pytestmark = pytest.mark.gui

TIMEOUT_MS = 120_000
#: A 300k-parameter grey U-Net: its export takes about a second.
SMALL_UNET = {
    "encoder_name": "tu-mobilenetv3_small_050",
    "in_channels": 1,
    "classes": 3,
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(sw, "show_error", shown.append)
    return shown


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    card = ModelCard.for_model("unet", SMALL_UNET, name="small grey unet")
    path = tmp_path_factory.mktemp("weights") / "small.safetensors"
    return save_weights(build_model("unet", **SMALL_UNET), card, path)


def make_widget(make_napari_viewer, qtbot, weights: Path) -> SegmentWidget:
    widget = SegmentWidget(make_napari_viewer())
    qtbot.addWidget(widget.native)
    widget._weights.value = weights
    assert widget.model_card is not None
    return widget


def test_the_button_exports_a_package_that_the_weight_picker_takes(
    make_napari_viewer, qtbot, small_unet, tmp_path, errors, monkeypatch
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, small_unet)
    export = widget.model_export
    assert export.button.text == me.EXPORT_TEXT and not export.status.visible
    asked: list[Path] = []

    def dialog(_parent, default: Path) -> Path:
        asked.append(default)
        return tmp_path / "packages" / "mine.zip"

    monkeypatch.setattr(me, "ask_package_path", lambda parent, default: dialog(parent, default))
    (tmp_path / "packages").mkdir()
    export.button.clicked.emit()
    assert asked == [small_unet.parent / "small_bioimageio.zip"]  # beside the weights
    assert export.running and not export.button.enabled
    qtbot.waitUntil(lambda: not export.running, timeout=TIMEOUT_MS)
    assert errors == []
    assert export.written == tmp_path / "packages" / "mine.zip"
    assert "a valid bioimage.io package" in export.status.value and export.button.enabled

    # the picker takes the package (zipped): same card, same predictions
    widget._weights.value = export.written
    assert errors == [] and widget.model_card.name == "small grey unet"
    assert widget.model_card.family == "unet" and widget.weights_path == export.written
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        ours = load_weights(small_unet).model(x)
        theirs = load_weights(widget.weights_path).model(x)
    np.testing.assert_allclose(theirs.numpy(), ours.numpy(), atol=1e-5)
    assert "bioimageio.yaml" in sw.WEIGHT_FILTER and "*.zip" in sw.WEIGHT_FILTER


def test_an_unzipped_packages_description_file_is_taken_too(
    make_napari_viewer, qtbot, small_unet, tmp_path, errors
) -> None:
    import zipfile

    widget = make_widget(make_napari_viewer, qtbot, small_unet)
    worker = widget.model_export.export(tmp_path / "small.zip")
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.model_export.running, timeout=TIMEOUT_MS)
    with zipfile.ZipFile(tmp_path / "small.zip") as zf:
        zf.extractall(tmp_path / "unzipped")
    rdf = tmp_path / "unzipped" / "bioimageio.yaml"
    widget._weights.value = rdf
    assert errors == [] and widget.model_card.name == read_card(small_unet).name


def test_a_maskrcnn_is_refused_at_once_in_one_line(
    make_napari_viewer, qtbot, tmp_path, errors, monkeypatch
) -> None:
    from tiny_models import save_tiny

    widget = make_widget(
        make_napari_viewer, qtbot, save_tiny("maskrcnn", tmp_path / "m.safetensors")
    )
    monkeypatch.setattr(me, "ask_package_path", lambda *_: pytest.fail("no dialog"))
    widget.model_export.button.clicked.emit()
    assert not widget.model_export.running
    assert len(errors) == 1 and "Mask R-CNN's variable-length list" in errors[0]
    assert "\n" not in errors[0] and "m.safetensors" in errors[0]
    assert list(tmp_path.glob("*.zip")) == []


def test_a_failed_export_says_why_and_writes_nothing(
    make_napari_viewer, qtbot, small_unet, tmp_path, errors
) -> None:
    widget = make_widget(make_napari_viewer, qtbot, small_unet)
    widget.model_export.export(tmp_path / "no_such_folder" / "x.zip")
    qtbot.waitUntil(lambda: not widget.model_export.running, timeout=TIMEOUT_MS)
    assert len(errors) == 1 and "\n" not in errors[0]
    assert widget.model_export.status.value.startswith("not exported: ")
    assert widget.model_export.written is None and not (tmp_path / "no_such_folder").exists()


def test_the_default_package_path() -> None:
    assert me.default_package_path(Path("/x/a_bioimageio.zip"), Path("/out")) == Path(
        "/out/a_bioimageio.zip"
    )
    assert me.default_package_path(Path("/x/pkg/rdf.yaml"), Path("/out")) == Path(
        "/out/pkg_bioimageio.zip"
    )
