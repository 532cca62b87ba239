"""A fine-tune of a fine-tune never validates on an image its base was trained on.

The loop: correct 3 images + 1, fine-tune M1; add 3 more, fine-tune M1 again. A fresh split
of the grown set could validate on one of M1's training images, where M1 looks better than
it is, so the never-worse rule would hand it back for the wrong reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_cellseg.events import Notice, drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.loop import iter_train
from napari_cellseg.training.manifest import file_manifest
from napari_cellseg.training.pairs import scan_training_folders
from napari_cellseg.training.split import split_pairs
from napari_cellseg.training.stable_split import earlier_roles, split_after

BASE = sample_data_dir() / "models" / "unet_dsb.safetensors"


def _folder(root: Path, names: list[str]) -> Path:
    """A training folder of distinct small images (their files differ, so do their hashes)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        rng = np.random.default_rng(k)
        image = (rng.random((48, 48)) * 200).astype(np.uint8)
        mask = np.zeros((48, 48), np.uint16)
        mask[8:20, 8:20], mask[28:40, 26:38] = 1, 2
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "masks" / f"{name}.tif", mask)
    return root


def _roles(train, val) -> dict[str, str]:
    return earlier_roles(file_manifest(train, "train") + file_manifest(val, "validation"))


def test_the_bases_training_images_stay_in_training(tmp_path) -> None:
    first = scan_training_folders([_folder(tmp_path / "set", ["a", "b", "c", "d"])])
    train1, val1 = split_pairs(first, 0.15, seed=4)
    roles = _roles(train1, val1)
    grown = scan_training_folders([_folder(tmp_path / "set", ["a", "b", "c", "d", "e", "f", "g"])])
    # the defect: with these names and seed a fresh split validates on a base training image
    _, fresh_val = split_pairs(grown, 0.15, seed=4)
    assert {p.name for p in fresh_val} & {p.name for p in train1}
    train, val, kept = split_after(grown, 0.15, 4, roles)
    assert kept == 4
    assert [p.name for p in val] == [p.name for p in val1]  # the base's validation image
    assert {p.name for p in train} == {"a", "b", "c", "d", "e", "f", "g"} - {val1[0].name}
    again = split_after(list(reversed(grown)), 0.15, 4, roles)
    assert again == (train, val, kept)  # the input order does not matter


def test_new_images_fill_the_validation_share(tmp_path) -> None:
    names = [f"n{k}" for k in range(10)]
    pairs = scan_training_folders([_folder(tmp_path / "set", names)])
    roles = _roles(pairs[:3], [])  # the base trained on n0-n2, validated on none of these
    train, val, kept = split_after(pairs, 0.2, 1, roles)
    assert kept == 3 and len(val) == 2  # round(10 x 0.2)
    assert not {p.name for p in val} & {"n0", "n1", "n2"}
    assert {"n0", "n1", "n2"} <= {p.name for p in train}


@pytest.mark.parametrize("case", ["no roles", "no validation share", "all trained on"])
def test_falls_back_to_the_plain_split(tmp_path, case) -> None:
    pairs = scan_training_folders([_folder(tmp_path / "set", ["a", "b", "c", "d"])])
    roles = {"no roles": {}, "no validation share": _roles(pairs[:2], pairs[2:3])}.get(case)
    fraction = 0.0 if case == "no validation share" else 0.25
    if case == "all trained on":  # nothing new, nothing validated: the old split, said as 0
        roles = _roles(pairs, [])
    train, val, kept = split_after(pairs, fraction, 0, roles)
    assert (train, val) == split_pairs(pairs, fraction, 0) and kept == 0


def test_a_second_fine_tune_keeps_the_roles_and_says_so(tmp_path) -> None:
    """Round 1 writes the roles into M1's card; round 2 from M1 keeps them (the real loop)."""
    params = TrainParams(
        family="unet", epochs=1, batch_size=2, patch_size=32, samples_per_epoch=2,
        val_fraction=0.15, device="cpu", seed=4,
    )  # fmt: skip
    folder = _folder(tmp_path / "set", ["a", "b", "c", "d"])
    m1 = tmp_path / "m1.safetensors"
    drain(iter_train([folder], m1, params, init=BASE))
    manifest = read_card(m1).provenance["data_manifest"]
    assert sorted(e["role"] for e in manifest) == ["train", "train", "train", "validation"]
    first_val = next(e["name"] for e in manifest if e["role"] == "validation")
    _folder(tmp_path / "set", ["a", "b", "c", "d", "e", "f", "g"])
    events: list = []
    m2 = tmp_path / "m2.safetensors"
    drain(iter_train([folder], m2, params, init=m1), events.append)
    roles = {e["name"]: e["role"] for e in read_card(m2).provenance["data_manifest"]}
    assert [n for n, r in roles.items() if r == "validation"] == [first_val]  # a fresh split: b
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any(n.startswith("4 images keep the roles the base model gave them") for n in notices)
    # the lineage keeps M1's manifest, roles included
    assert read_card(m2).lineage[-1]["data_manifest"] == manifest
    shutil.rmtree(folder)


def test_the_split_and_the_manifest_read_each_file_once(tmp_path, monkeypatch) -> None:
    from napari_cellseg.training import manifest as manifest_module

    names = ["a", "b", "c", "d", "e"]
    pairs = scan_training_folders([_folder(tmp_path / "set", names)])
    roles = _roles(pairs[:2], pairs[2:3])
    read: list[Path] = []
    real = manifest_module.sha256_path
    monkeypatch.setattr(manifest_module, "sha256_path", lambda p: read.append(Path(p)) or real(p))
    hashes: dict[Path, str] = {}
    train, val, _ = split_after(pairs, 0.2, 0, roles, hashes)
    manifest = file_manifest(train, "train", hashes) + file_manifest(val, "validation", hashes)
    assert len(read) == len(set(read)) == 2 * len(names)  # each image and mask once
    assert manifest == file_manifest(train, "train") + file_manifest(val, "validation")
