"""``cellseg export`` and ``cellseg predict --export``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_cellseg.cli import main
from napari_cellseg.io.geojson import read_geojson_labels
from napari_cellseg.io.imagej_rois import read_roi_zip_labels
from napari_cellseg.io.images import read_labels, write_labels


def _labels() -> np.ndarray:
    labels = np.zeros((24, 32), np.uint16)
    labels[2:10, 2:12] = 1
    labels[2:10, 12:20] = 2  # touching 1
    labels[4:7, 14:17] = 0  # a hole in 2
    labels[15:20, 5:9] = 3
    return labels


def test_export_both_formats_beside_the_labels(tmp_path, capsys) -> None:
    path = write_labels(tmp_path / "a_labels.tif", _labels(), pixel_size_um=(0.5, 0.5))
    assert main(["export", str(path), "--to", "geojson,roi"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"{path}: 3 objects -> {tmp_path / 'a_labels.geojson'}",
        f"{path}: 3 objects -> {tmp_path / 'a_rois.zip'}",
    ]
    back, meta = read_geojson_labels(tmp_path / "a_labels.geojson")
    np.testing.assert_array_equal(back, _labels())
    assert meta["pixel_size_um"] == pytest.approx([0.5, 0.5])
    np.testing.assert_array_equal(read_roi_zip_labels(tmp_path / "a_rois.zip", (24, 32)), _labels())


def test_export_with_an_image_and_an_output_name(tmp_path) -> None:
    path = write_labels(tmp_path / "cells.tif", _labels())
    image = np.full((24, 32), 5, np.uint8)
    image[_labels() == 3] = 200
    tifffile.imwrite(tmp_path / "image.tif", image)
    out = tmp_path / "for_qupath.geojson"
    rc = main(["export", str(path), "--to", "geojson", "--image", str(tmp_path / "image.tif")])
    assert rc == 0
    rc = main(["export", str(path), "--to", "GeoJSON", "--out", str(out)])
    assert rc == 0 and out.is_file()
    doc = json.loads((tmp_path / "cells.geojson").read_text())
    means = {f["properties"]["name"]: f["properties"]["measurements"] for f in doc["features"]}
    assert means["3"]["mean_intensity"] == 200.0 and means["1"]["mean_intensity"] == 5.0


def test_export_of_a_stack_keeps_its_axes(tmp_path) -> None:
    stack = np.stack([_labels(), np.roll(_labels(), 3, axis=1)])
    path = write_labels(tmp_path / "t_labels.tif", stack, axes="TYX")
    assert main(["export", str(path), "--to", "geojson,roi"]) == 0
    back, meta = read_geojson_labels(tmp_path / "t_labels.geojson")
    assert meta["axes"] == "TYX"
    np.testing.assert_array_equal(back, stack)
    rois = read_roi_zip_labels(tmp_path / "t_rois.zip", stack.shape, axes="TYX")
    np.testing.assert_array_equal(rois, stack)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "csv"], "unknown export format 'csv'"),
        (["--to", "geojson,roi", "--out", "x.geojson"], "--out names one file"),
        (["--to", "roi", "--out", "missing/x.zip"], "folder does not exist"),
        (["--to", "geojson", "--image", "small.tif"], "does not fit labels of shape"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, monkeypatch, extra, message) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_labels(tmp_path / "a_labels.tif", _labels())
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((5, 5), np.uint8))
    assert main(["export", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_labels.tif", "small.tif"]


def test_export_of_a_float_image_names_the_file(tmp_path, capsys) -> None:
    path = tmp_path / "probabilities.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((8, 8)).astype(np.float32))
    assert main(["export", str(path), "--to", "geojson"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "non-integer" in err


def test_predict_export_writes_beside_each_label_file(tmp_path, capsys) -> None:
    from napari_cellseg.io.samples import get_sample
    from napari_cellseg.models import ModelCard, build_model, save_weights
    from tiny_models import TINY_UNET

    weights = save_weights(
        build_model("unet", **TINY_UNET),
        ModelCard.for_model("unet", TINY_UNET),
        tmp_path / "u.safetensors",
    )
    image = get_sample("dsb_fluorescence").image_path
    out = tmp_path / "out"
    args = ["predict", str(image), "--weights", str(weights), "--out", str(out)]
    rc = main([*args, "--tile", "128", "--threshold", "0.0", "--export", "geojson,roi"])
    assert rc == 0
    stem = image.stem
    line = capsys.readouterr().out.strip()
    assert line.endswith(f"{stem}_labels.tif, {stem}_labels.geojson, {stem}_rois.zip")
    labels = read_labels(out / f"{stem}_labels.tif")
    back, _ = read_geojson_labels(out / f"{stem}_labels.geojson")
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_array_equal(
        read_roi_zip_labels(out / f"{stem}_rois.zip", labels.shape), labels
    )
