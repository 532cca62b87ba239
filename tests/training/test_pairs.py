"""Training folders: scanning and checking, splitting, manifests, loading pairs."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.images import read_labels
from napari_cellseg.models.card import ModelCard
from napari_cellseg.training.manifest import file_manifest
from napari_cellseg.training.pairs import (
    DatasetError,
    TrainingPair,
    load_pair,
    scan_training_folders,
)
from napari_cellseg.training.split import split_pairs

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


def _image(shape: tuple[int, ...] = (32, 32)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)


def _mask(shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    mask = np.zeros(shape, np.uint16)
    mask[4:12, 4:12] = 1
    mask[16:24, 10:20] = 2
    return mask


def _write_pair(root: Path, name: str, image=None, mask=None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    if image is not None:
        iio.imwrite(root / "images" / f"{name}.png", image)
    if mask is not None:
        tifffile.imwrite(root / "masks" / f"{name}.tif", mask)


def _pairs(n: int) -> list[TrainingPair]:
    return [
        TrainingPair(Path(f"{i}.png"), Path(f"{i}.tif"), "set", f"img{i:02d}") for i in range(n)
    ]


def test_broken_folders_report_every_problem_at_once(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    _write_pair(root, "good", _image(), _mask())
    _write_pair(root, "nomask", _image(), None)
    _write_pair(root, "noimage", None, _mask())
    _write_pair(root, "mismatch", _image((32, 32)), _mask((32, 40)))
    _write_pair(root, "fraction", _image(), _mask().astype(np.float32) + 0.5)
    _write_pair(root, "negative", _image(), -_mask().astype(np.int16))
    _write_pair(root, "emptyimage", None, _mask())
    (root / "images" / "emptyimage.png").write_bytes(b"")
    _write_pair(root, "emptymask", _image(), None)
    (root / "masks" / "emptymask.tif").write_bytes(b"")
    _write_pair(root, "garbage", _image(), None)
    (root / "masks" / "garbage.tif").write_bytes(b"not a tiff at all")
    stack = np.zeros((5, 32, 32), np.uint8)
    tifffile.imwrite(root / "images" / "stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(root / "masks" / "stack.tif", _mask())
    (root / "images" / "notes.txt").write_text("ignored")
    no_masks = tmp_path / "no_masks"
    (no_masks / "images").mkdir(parents=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    (no_images / "images").mkdir(parents=True)
    (no_images / "masks").mkdir()

    with pytest.raises(DatasetError) as info:
        scan_training_folders([root, no_masks, empty, no_images, tmp_path / "missing"])
    err = info.value
    text = str(err)
    assert len(text.splitlines()) == len(err.problems) + 1
    expected = {
        "nomask.png": "no mask",
        "noimage.tif": "without an image",
        "mismatch.tif": "differs",
        "fraction.tif": "non-integer",
        "negative.tif": "negative",
        "emptyimage.png": "empty",
        "emptymask.tif": "empty",
        "garbage.tif": "TIFF",
        "stack.tif": "stack",
    }
    for file_name, what in expected.items():
        matching = [p for p in err.problems if file_name in p]
        assert matching, f"{file_name} not reported in:\n{text}"
        assert any(what in p for p in matching), matching
    assert any(str(no_masks) in p and "masks/" in p for p in err.problems)
    assert sum(str(empty) in p for p in err.problems) == 2  # neither images/ nor masks/
    assert any(str(no_images / "images") in p and "no images" in p for p in err.problems)
    assert any("missing" in p and "not found" in p for p in err.problems)
    assert not any("good" in p or "notes.txt" in p for p in err.problems)
    assert isinstance(err, CellsegError)


def test_duplicate_names_and_empty_list(tmp_path: Path) -> None:
    _write_pair(tmp_path / "d", "a", _image(), _mask())
    tifffile.imwrite(tmp_path / "d" / "images" / "a.tif", _image())
    with pytest.raises(DatasetError, match="same name"):
        scan_training_folders([tmp_path / "d"])
    with pytest.raises(DatasetError, match="no training folders"):
        scan_training_folders([])


def test_sample_data_scans_and_loads() -> None:
    pairs = scan_training_folders([SAMPLE_DATA, str(SAMPLE_DATA)])  # twice: used once
    assert [p.name for p in pairs] == ["dsb_brightfield", "dsb_fluorescence", "dsb_he"]
    assert {p.dataset for p in pairs} == {"sample_data"}
    assert all(p.image_path.suffix == ".png" and p.mask_path.suffix == ".tif" for p in pairs)

    rgb = ModelCard.for_model("unet", {"in_channels": 3})
    grey = ModelCard.for_model("unet", {"in_channels": 1})
    for pair in pairs:
        image, labels = load_pair(pair, rgb)
        truth = read_labels(pair.mask_path)
        assert image.dtype == np.float32 and image.shape == (3, *truth.shape)
        assert image.min() >= 0.0 and image.max() <= 1.0  # percentile, clipped
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, truth)
        grey_image, _ = load_pair(pair, grey)
        assert grey_image.shape == (1, *truth.shape)


def test_load_pair_rejects_stacks_and_bad_channels(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a", None, _mask())
    stack = np.zeros((5, 32, 32), np.uint8)
    tifffile.imwrite(tmp_path / "images" / "a.tif", stack, photometric="minisblack")
    pair = TrainingPair(tmp_path / "images" / "a.tif", tmp_path / "masks" / "a.tif", "x", "a")
    with pytest.raises(CellsegError, match="stack"):
        load_pair(pair, ModelCard.for_model("unet", {"in_channels": 3}))
    _write_pair(tmp_path, "b", _image((32, 32, 2)), _mask())  # grey + alpha PNG
    pair = TrainingPair(tmp_path / "images" / "b.png", tmp_path / "masks" / "b.tif", "x", "b")
    card = ModelCard.for_model("unet", {"in_channels": 3})
    with pytest.raises(CellsegError, match=r"b\.png: the image has 2 channels"):
        load_pair(pair, card)
    image, _ = load_pair(pair, card, channels=(0, 1, 1))
    assert image.shape == (3, 32, 32)


def test_split_is_deterministic_and_order_independent() -> None:
    pairs = _pairs(20)
    train, val = split_pairs(pairs, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert {p.name for p in train} | {p.name for p in val} == {p.name for p in pairs}
    assert not {p.name for p in train} & {p.name for p in val}
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    assert split_pairs(shuffled, 0.25, seed=3) == (train, val)
    assert split_pairs(pairs, 0.25, seed=3) == (train, val)
    others = [split_pairs(pairs, 0.25, seed=s)[1] for s in range(4, 8)]
    assert any(o != val for o in others)
    assert [p.name for p in val] == sorted(p.name for p in val)


def test_split_edge_cases() -> None:
    assert len(split_pairs(_pairs(10), 0.01, seed=0)[1]) == 1  # at least one when asked
    assert len(split_pairs(_pairs(2), 0.9, seed=0)[0]) == 1  # training keeps one
    assert split_pairs(_pairs(1), 0.5, seed=0) == (_pairs(1), [])
    assert split_pairs(_pairs(4), 0.0, seed=0) == (_pairs(4), [])
    assert split_pairs([], 0.2, seed=0) == ([], [])
    with pytest.raises(CellsegError):
        split_pairs(_pairs(4), 1.0, seed=0)


def test_manifest_has_names_and_hashes() -> None:
    pairs = scan_training_folders([SAMPLE_DATA])
    manifest = file_manifest(pairs)
    assert len(manifest) == 3
    for entry, pair in zip(manifest, pairs, strict=True):
        assert set(entry) == {"name", "dataset", "image", "mask", "image_sha256", "mask_sha256"}
        assert entry["name"] == pair.name and entry["dataset"] == "sample_data"
        assert entry["image"] == pair.image_path.name and entry["mask"] == pair.mask_path.name
        assert entry["image_sha256"] == hashlib.sha256(pair.image_path.read_bytes()).hexdigest()
        assert entry["mask_sha256"] == hashlib.sha256(pair.mask_path.read_bytes()).hexdigest()
