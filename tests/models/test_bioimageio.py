"""bioimage.io packages: export validates offline, re-import predicts the same, bad ones fail."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_cellseg.errors import CellsegError
from napari_cellseg.models import ModelCard, build_model, load_weights, read_card, save_weights
from napari_cellseg.models.bioimageio import (
    BioimageioError,
    normalisation_from,
    preprocessing_for,
    require_spec,
)
from napari_cellseg.params import PredictParams

#: A 300k-parameter grey U-Net: exporting it takes about a second.
SMALL_UNET = {
    "encoder_name": "tu-mobilenetv3_small_050",
    "in_channels": 1,
    "classes": 3,
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}


def _blobs(size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.float32)
    for cy, cx in rng.uniform(10, size - 10, (8, 2)):
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
    return (np.clip(image, 0, 1) * 200 + 20).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small U-Net as a weight file and as a validated package (with TorchScript)."""
    pytest.importorskip("bioimageio.spec")
    from napari_cellseg.models.bioimageio_export import export_bioimageio

    folder = tmp_path_factory.mktemp("bioimageio")
    torch.manual_seed(3)
    card = ModelCard.for_model(
        "unet",
        SMALL_UNET,
        name="small grey unet",
        postprocess={"min_size": 5},
        object_diameter=12.0,
    )
    weights = save_weights(build_model("unet", **SMALL_UNET), card, folder / "small.safetensors")
    package = export_bioimageio(
        weights,
        folder / "small.zip",
        authors=["Ada Lovelace"],
        test_image=_blobs(160),
        torchscript=True,
    )
    return weights, package


def _unzip(package: Path, into: Path) -> Path:
    with zipfile.ZipFile(package) as zf:
        zf.extractall(into)
    return into


def _edit_rdf(folder: Path, edit) -> Path:
    rdf = folder / "bioimageio.yaml"
    data = yaml.safe_load(rdf.read_text(encoding="utf-8"))
    edit(data)
    rdf.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return folder


def test_export_validates_offline_and_reimports_to_the_same_predictions(exported) -> None:
    from napari_cellseg.inference.api import predict
    from napari_cellseg.models.bioimageio import validate_package
    from napari_cellseg.models.bioimageio_import import check_test_tensors

    weights, package = exported
    warnings = validate_package(package)  # raises on any validator error
    assert not any("test_tensor" in w for w in warnings)
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("bioimageio.yaml"))
    assert {"weights.pt", "weights_torchscript.pt", "cover.png", "README.md"} <= names
    state = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert state["import_from"] == "segmentation_models_pytorch" and state["callable"] == "Unet"
    assert state["kwargs"]["encoder_weights"] is None
    steps = [s["id"] for s in rdf["inputs"][0]["preprocessing"]]
    assert steps == ["ensure_dtype", "scale_range", "clip"]
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["background", "interior", "boundary"]

    original, imported = load_weights(weights), load_weights(package)
    assert imported.source == "bioimageio-pytorch_state_dict"
    assert imported.card.to_dict() == original.card.to_dict()
    assert read_card(package).to_dict() == original.card.to_dict()
    assert check_test_tensors(imported, package) < 1e-5
    image, params = _blobs(96), PredictParams(keep_probabilities=True)
    a, b = predict(image, original, params), predict(image, imported, params)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_torchscript_only_package_needs_explicit_trust(exported, tmp_path: Path) -> None:
    from napari_cellseg.models.bioimageio_import import check_test_tensors, import_bioimageio

    def script_only(data: dict) -> None:
        del data["weights"]["pytorch_state_dict"]
        data["weights"]["torchscript"].pop("parent")
        del data["config"]  # no napari-cellseg card: made from the package's metadata

    folder = _edit_rdf(_unzip(exported[1], tmp_path / "pkg"), script_only)
    with pytest.raises(BioimageioError, match="--trust-torchscript") as info:
        import_bioimageio(folder)
    assert "\n" not in str(info.value)
    loaded = import_bioimageio(folder, trust_torchscript=True)
    assert loaded.source == "bioimageio-torchscript"
    assert loaded.card.normalisation == {
        "method": "percentile",
        "low": 1.0,
        "high": 99.8,
        "clip": True,
    }
    assert loaded.card.input_channels == 1 and loaded.card.channel_handling == "grey"
    assert loaded.card.outputs == ["background", "interior", "boundary"]
    assert check_test_tensors(loaded, folder) < 1e-4


def _drop_weights(data: dict) -> None:
    data["weights"]["pytorch_state_dict"]["source"] = "missing.pt"
    data["weights"]["pytorch_state_dict"].pop("sha256")
    data["weights"].pop("torchscript")


def _unknown_architecture(data: dict) -> None:
    data["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "FPN"
    data["weights"].pop("torchscript")


def _zero_mean(data: dict) -> None:
    data["inputs"][0]["preprocessing"] = [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}
    ]
    del data["config"]


def _volume(data: dict) -> None:
    data["inputs"][0]["axes"].insert(2, {"type": "space", "id": "z", "size": 8})
    del data["config"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_drop_weights, "lacks missing.pt"),
        (_unknown_architecture, "no weights napari-cellseg can use"),
        (_zero_mean, "no napari-cellseg normalisation equivalent"),
        (_volume, "2-D models"),
    ],
)
def test_bad_packages_fail_in_one_line(exported, tmp_path: Path, edit, expected: str) -> None:
    folder = _edit_rdf(_unzip(exported[1], tmp_path / "pkg"), edit)
    with pytest.raises(BioimageioError, match=expected) as info:
        load_weights(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_corrupt_and_foreign_zips_fail_in_one_line(exported, tmp_path: Path) -> None:
    from napari_cellseg.models.bioimageio_import import import_bioimageio

    data = exported[1].read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("notes.txt", "hello")
    for path, expected in ((truncated, "not a readable zip"), (plain, "without bioimageio.yaml")):
        with pytest.raises(BioimageioError, match=expected) as info:
            import_bioimageio(path)
        assert "\n" not in str(info.value)


def test_maskrcnn_and_bad_names_are_refused(exported, tmp_path: Path) -> None:
    from napari_cellseg.models.bioimageio_export import export_bioimageio
    from tiny_models import save_tiny

    with pytest.raises(BioimageioError, match="must be a .zip|is a .zip"):
        export_bioimageio(exported[0], tmp_path / "model.yaml")
    maskrcnn = save_tiny("maskrcnn", tmp_path / "m.safetensors")
    with pytest.raises(BioimageioError, match="Mask R-CNN's variable-length list"):
        export_bioimageio(maskrcnn, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_stopping_the_export_writes_nothing(exported, tmp_path: Path) -> None:
    from napari_cellseg.models.bioimageio_export import iter_export_bioimageio

    out = tmp_path / "stopped.zip"
    work = iter_export_bioimageio(exported[0], out)
    stages = [next(work).done, next(work).done]
    work.close()  # what a Stop button does between two yields
    assert stages == [0, 1] and not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import now fails
    with pytest.raises(CellsegError, match=r"pip install 'napari-cellseg\[bioimageio\]'") as info:
        require_spec()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "norm",
    [
        {"method": "percentile", "low": 2.0, "high": 99.0, "clip": True},
        {"method": "percentile", "low": 1.0, "high": 99.8, "clip": False},
        {"method": "minmax"},
        {"method": "dtype-range", "max": 4095.0},
        {"method": "imagenet", "max": 255.0, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]},
        {"method": "range", "lo": [10.0, 0.0, 5.0], "hi": [200.0, 100.0, 50.0], "clip": True},
        {"method": "none"},
    ],
)
def test_normalisation_survives_preprocessing(norm: dict) -> None:
    from napari_cellseg.models.normalise import normalise

    back = normalisation_from(preprocessing_for(norm, 3, dtype_max=255.0), "p")
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(normalise(x, back), normalise(x, norm), rtol=1e-5, atol=1e-5)
    if norm["method"] != "none":  # inverted too: one more step, read back as invert
        flipped = {**norm, "invert": True}
        steps = preprocessing_for(flipped, 3, dtype_max=255.0)
        assert len(steps) == len(preprocessing_for(norm, 3, dtype_max=255.0)) + 1
        back = normalisation_from(steps, "p")
        assert back["invert"] is True
        np.testing.assert_allclose(normalise(x, back), normalise(x, flipped), rtol=1e-5, atol=1e-5)


def test_cli_export_and_import(exported, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from napari_cellseg.cli import main

    out = tmp_path / "cli.zip"
    assert main(["export-model", str(exported[0]), "--to", "bioimageio", "--out", str(out)]) == 0
    assert "valid bioimage.io model package" in capsys.readouterr().out
    back = tmp_path / "back.safetensors"
    assert main(["import-model", str(out), "--out", str(back)]) == 0
    assert "reproduces the package's test output" in capsys.readouterr().out
    assert read_card(back).to_dict() == read_card(exported[0]).to_dict()
    broken = tmp_path / "broken.zip"
    shutil.copy(out, broken)
    broken.write_bytes(broken.read_bytes()[:1000])
    assert main(["import-model", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellseg: error:") and "\n" not in err


@pytest.mark.slow
def test_demo_unet_exports_validates_and_reimports(tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.spec")
    from napari_cellseg.inference.api import predict
    from napari_cellseg.models import list_bundled_weights
    from napari_cellseg.models.bioimageio_export import export_bioimageio

    unet = next((p for p in list_bundled_weights() if read_card(p).family == "unet"), None)
    if unet is None:
        pytest.skip("no bundled demo U-Net")
    package = export_bioimageio(unet, tmp_path / "demo.zip", authors=["napari-cellseg tests"])
    image, params = _blobs(128), PredictParams(keep_probabilities=True)
    a = predict(image, load_weights(unet), params)
    b = predict(image, load_weights(package), params)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-3)  # float16 file
    assert (a.labels > 0).sum() == pytest.approx((b.labels > 0).sum(), rel=0.01)


def test_import_refuses_a_package_it_does_not_reproduce(
    exported, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from napari_cellseg.cli import main

    def other_percentiles(data: dict) -> None:  # preprocessing no longer what made the output
        data["inputs"][0]["preprocessing"][1]["kwargs"]["max_percentile"] = 60.0
        del data["config"]

    folder = _edit_rdf(_unzip(exported[1], tmp_path / "pkg"), other_percentiles)
    out = tmp_path / "w.safetensors"
    assert main(["import-model", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "do not reproduce the package's test output" in err and "\n" not in err
    assert not out.exists()


def test_an_unzipped_package_is_named_by_its_description_file(exported, tmp_path: Path) -> None:
    """A file dialog picks ``bioimageio.yaml`` (or ``rdf.yaml``), not the folder."""
    from napari_cellseg.models.weights import weights_root

    folder = _unzip(exported[1], tmp_path / "unzipped")
    rdf = folder / "bioimageio.yaml"
    assert weights_root(rdf) == folder and weights_root(exported[1]) == exported[1]
    assert read_card(rdf).name == read_card(exported[0]).name == "small grey unet"
    from_rdf, from_zip = load_weights(rdf), load_weights(exported[1])
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(from_rdf.model(x), from_zip.model(x))
    renamed = folder / "rdf.yaml"
    rdf.rename(renamed)
    assert read_card(renamed).name == "small grey unet"
