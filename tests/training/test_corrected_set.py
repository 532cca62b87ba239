"""Adding corrected labels to a training set; manifest, name collisions, atomicity, autosave."""

from __future__ import annotations

import doctest
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.training import corrected_set as training_set
from napari_cellseg.training.corrected_set import (
    add_to_training_set,
    autosave_corrections,
    list_autosaves,
    read_manifest,
    safe_name,
)
from napari_cellseg.training.pairs import scan_training_folders


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray, Path]:
    s = get_sample("dsb_fluorescence")
    return read_image(s.image_path).data, read_labels(s.mask_path), s.image_path


def test_doctests() -> None:
    assert doctest.testmod(training_set).failed == 0


def test_added_pair_is_a_valid_training_set(tmp_path: Path, sample) -> None:
    image, labels, source = sample
    folder = tmp_path / "my set"
    image_path, mask_path = add_to_training_set(
        folder, "cells 01", image, labels, source=str(source), edited_ids=[5, 3, 5],
        model="unet-resnet34",
    )  # fmt: skip
    assert image_path == folder / "images" / "cells 01.tif"
    assert mask_path == folder / "masks" / "cells 01.tif"
    pairs = scan_training_folders([folder])
    assert [p.name for p in pairs] == ["cells 01"]
    stored = read_image(image_path)
    assert stored.axes == "YXS"
    assert np.array_equal(stored.data, image)  # RGB(A) kept as is
    assert np.array_equal(read_labels(mask_path), labels)
    (entry,) = json.loads((folder / "manifest.json").read_text())
    assert entry["name"] == "cells 01"
    assert entry["image"] == "images/cells 01.tif"
    assert entry["mask"] == "masks/cells 01.tif"
    assert entry["source"] == str(source)
    assert entry["edited_object_ids"] == [3, 5]
    assert entry["model"] == "unet-resnet34"
    assert entry["n_objects"] == len(np.unique(labels)) - 1
    assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0


def test_name_collision_gets_a_suffix(tmp_path: Path) -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 1
    first = add_to_training_set(tmp_path, "a/b", image, labels)
    second = add_to_training_set(tmp_path, "a/b", image, labels)
    (tmp_path / "images" / "x.png").write_bytes(b"")  # a stem taken by another file type
    third = add_to_training_set(tmp_path, "x", image, labels)
    assert first[0].name == "a_b.tif"
    assert second[0].name == "a_b_2.tif"
    assert third[0].name == "x_2.tif"
    assert [e["name"] for e in read_manifest(tmp_path)] == ["a_b", "a_b_2", "x_2"]
    labels[0, 0] = 2
    again = add_to_training_set(tmp_path, "a/b", image, labels, overwrite=True)
    assert again[0] == first[0]
    assert read_labels(again[1])[0, 0] == 2
    names = [e["name"] for e in read_manifest(tmp_path)]
    assert names == ["a_b_2", "x_2", "a_b"]


def test_shape_mismatch_and_bad_manifest(tmp_path: Path) -> None:
    labels = np.ones((8, 8), np.uint16)
    with pytest.raises(CellsegError, match="does not match the labels"):
        add_to_training_set(tmp_path, "a", np.zeros((8, 9)), labels)
    with pytest.raises(CellsegError, match="2-D labels"):
        add_to_training_set(tmp_path, "a", np.zeros((8, 8)), np.ones((2, 8, 8), np.uint16))
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(CellsegError, match="cannot read the manifest"):
        add_to_training_set(tmp_path, "a", np.zeros((8, 8)), labels)
    assert not (tmp_path / "images").exists()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("fail_at", ["write_labels", "atomic_write_text"])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch, fail_at: str) -> None:
    image = np.zeros((8, 8), np.uint8)
    labels = np.ones((8, 8), np.uint16)
    add_to_training_set(tmp_path, "kept", image, labels)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training_set, fail_at, fail)
    with pytest.raises(CellsegError, match="No space left"):
        add_to_training_set(tmp_path, "new", image, labels)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert [p.name for p in scan_training_folders([tmp_path])] == ["kept"]


def test_safe_name() -> None:
    assert safe_name("nuclei 1") == "nuclei 1"
    assert safe_name("C:\\data\\x?.tif") == "C_data_x_.tif"
    assert safe_name("/") == "_"
    assert safe_name("") == "image"


def test_autosave(tmp_path: Path) -> None:
    assert list_autosaves(tmp_path) == []
    labels = np.zeros((6, 6), np.uint16)
    labels[1:3, 1:3] = 4
    path = autosave_corrections(tmp_path, "img · unet", labels)
    assert path == tmp_path / ".autosave" / "img · unet_labels.tif"
    assert np.array_equal(read_labels(path), labels)
    labels[4, 4] = 9
    autosave_corrections(tmp_path, "img · unet", labels)
    assert read_labels(path)[4, 4] == 9
    assert list_autosaves(tmp_path) == [path]
    assert _files(tmp_path) == [".autosave/img · unet_labels.tif"]


def test_a_checked_region_is_written_beside_the_pair(tmp_path: Path) -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 1
    region = np.zeros((8, 8), bool)
    region[:6, :6] = True
    add_to_training_set(tmp_path, "part", image, labels, region=region)
    path = tmp_path / "regions" / "part.tif"
    stored = read_labels(path)
    assert np.array_equal(stored > 0, region) and set(np.unique(stored)) == {0, 1}
    (entry,) = read_manifest(tmp_path)
    assert entry["region"] == "regions/part.tif" and entry["checked_fraction"] == 0.5625
    (pair,) = scan_training_folders([tmp_path])
    assert pair.region_path == path
    # corrected again, this time the whole image: the old region no longer applies
    add_to_training_set(tmp_path, "part", image, labels, overwrite=True)
    assert not path.exists() and scan_training_folders([tmp_path])[0].region_path is None
    assert read_manifest(tmp_path)[0]["region"] is None


def test_a_bad_checked_region_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    labels = np.ones((8, 8), np.uint16)
    with pytest.raises(CellsegError, match=r"checked region \(shape \(8, 9\)\) does not match"):
        add_to_training_set(tmp_path, "a", np.zeros((8, 8)), labels, region=np.ones((8, 9)))
    with pytest.raises(CellsegError, match="checked region is empty"):
        add_to_training_set(tmp_path, "a", np.zeros((8, 8)), labels, region=np.zeros((8, 8)))
    assert not any(tmp_path.iterdir())
