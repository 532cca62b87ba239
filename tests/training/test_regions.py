"""Partial corrections: only the checked region of a training image counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.augment import build_augmentation
from napari_cellseg.training.datasets import CropDataset
from napari_cellseg.training.loop import fit
from napari_cellseg.training.losses import build_loss, cross_entropy
from napari_cellseg.training.manifest import file_manifest
from napari_cellseg.training.pairs import (
    DatasetError,
    TrainingPair,
    load_region,
    scan_training_folders,
)
from napari_cellseg.training.regions import edited_region, object_boxes
from napari_cellseg.training.targets import IGNORE
from napari_cellseg.training.validation import (
    ValidationImage,
    at_training_scale,
    read_validation_images,
)
from tiny_models import TINY_UNET

THREE = ["background", "interior", "boundary"]


def _discs(size: int = 96, n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(8, size - 8, 2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = k
    return labels


# -- losses ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "channels"), [("dice+ce", 3), ("dice+focal", 3), ("dice+ce", 1)])
def test_predictions_outside_the_region_change_neither_loss_nor_gradient(name, channels) -> None:
    gen = torch.Generator().manual_seed(0)
    if channels == 1:
        target = torch.randint(0, 2, (2, 1, 16, 16), generator=gen).float()
        target[..., :6] = IGNORE
    else:
        target = torch.randint(0, channels, (2, 16, 16), generator=gen)
        target[..., :6] = IGNORE
    loss_fn = build_loss(name)
    logits = torch.randn(2, channels, 16, 16, generator=gen, requires_grad=True)
    loss = loss_fn(logits, target)
    loss.backward()
    grad = logits.grad.clone()
    assert torch.all(grad[..., :6] == 0) and torch.any(grad[..., 6:] != 0)
    changed = logits.detach().clone()
    changed[..., :6] = 50 * torch.randn(2, channels, 16, 6, generator=gen)
    changed.requires_grad_(True)
    again = loss_fn(changed, target)
    again.backward()
    assert torch.isclose(again, loss, atol=1e-6)
    assert torch.allclose(changed.grad, grad, atol=1e-6)


def test_without_ignored_pixels_the_losses_are_the_plain_means() -> None:
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(2))
    assert torch.equal(cross_entropy(logits, target), F.cross_entropy(logits, target))
    everything = torch.full_like(target, IGNORE)
    assert float(cross_entropy(logits, everything)) == 0.0  # a crop with nothing checked


# -- training crops -------------------------------------------------------------------------
@pytest.mark.parametrize("diameter", [None, 20.0])
def test_the_region_is_cut_and_augmented_together_with_the_labels(diameter) -> None:
    labels = _discs()
    image = np.stack([labels > 0] * 3).astype(np.float32)
    region = labels > 0  # checked exactly where the objects are
    dataset = CropDataset(
        [(image, labels)],
        family="unet",
        outputs=THREE,
        patch_size=48,
        samples_per_epoch=16,
        augment=build_augmentation(rgb_histology=False),
        seed=0,
        object_diameter=diameter,
        scale_jitter=0.3,
        regions=[region],
    )
    seen = set()
    for i in range(len(dataset)):
        _, target = dataset[i]
        values = set(torch.unique(target).tolist())
        # the region moved with the labels: no background pixel is ever inside it
        assert values <= {IGNORE, 1, 2}, values
        assert values & {1, 2}  # every crop shows part of the region
        seen |= values
    assert seen == {IGNORE, 1, 2}


def test_mask_rcnn_crops_blank_and_clip_what_was_not_checked() -> None:
    labels = _discs(seed=1)
    image = np.ones((3, *labels.shape), np.float32)
    region = labels > 0
    dataset = CropDataset(
        [(image, labels)],
        family="maskrcnn",
        outputs=["background", "object"],
        patch_size=48,
        samples_per_epoch=8,
        augment=build_augmentation(rgb_histology=False),
        seed=2,
        regions=[region],
    )
    for i in range(len(dataset)):
        image_out, target = dataset[i]
        union = target["masks"].sum(0) > 0
        assert len(target["labels"]) > 0
        assert float(image_out[:, ~union].abs().max()) == 0.0  # outside the region: blanked


def test_crops_are_drawn_around_a_small_region() -> None:
    labels = _discs(size=200, n=40)
    region = np.zeros_like(labels, bool)
    region[180:190, 5:15] = True
    dataset = CropDataset(
        [(np.zeros((1, 200, 200), np.float32), labels)],
        family="unet",
        outputs=THREE,
        patch_size=32,
        samples_per_epoch=20,
        augment=None,
        seed=4,
        regions=[region],
    )
    for i in range(len(dataset)):
        _, target = dataset[i]
        assert (target != IGNORE).sum() > 0
        assert (target == IGNORE).sum() > 0


def test_a_region_of_the_wrong_size_is_refused() -> None:
    labels = _discs()
    with pytest.raises(CellsegError, match=r"region mask \(10, 10\) differs from the labels"):
        CropDataset(
            [(np.zeros((1, 96, 96), np.float32), labels)],
            family="unet",
            outputs=THREE,
            patch_size=32,
            samples_per_epoch=1,
            augment=None,
            seed=0,
            regions=[np.ones((10, 10), bool)],
        )


# -- training folders -----------------------------------------------------------------------
def _folder_with_region(root: Path, region: np.ndarray | None = None) -> Path:
    shutil.copytree(sample_data_dir() / "images", root / "images")
    shutil.copytree(sample_data_dir() / "masks", root / "masks")
    (root / "regions").mkdir()
    if region is None:
        region = np.zeros((256, 256), np.uint8)
        region[:128, :] = 1
    tifffile.imwrite(root / "regions" / "dsb_fluorescence.tif", region)
    return root


def test_region_masks_are_found_hashed_and_read(tmp_path) -> None:
    root = _folder_with_region(tmp_path / "set")
    pairs = {p.name: p for p in scan_training_folders([root])}
    pair = pairs["dsb_fluorescence"]
    assert pair.region_path == root / "regions" / "dsb_fluorescence.tif"
    assert pairs["dsb_he"].region_path is None
    entry = next(e for e in file_manifest([pair]))
    assert entry["region"] == "dsb_fluorescence.tif" and len(entry["region_sha256"]) == 64
    assert "region" not in file_manifest([pairs["dsb_he"]])[0]
    region = load_region(pair, (256, 256))
    assert region.dtype == bool and region[:128].all() and not region[128:].any()
    (val,) = read_validation_images([pair])
    assert val.region is not None and val.region.sum() == 128 * 256
    (zoomed,), _ = at_training_scale([val], 40.0)
    assert zoomed.region.shape == zoomed.truth.shape[-2:] != val.region.shape
    half = zoomed.region.shape[0] // 2
    assert zoomed.region[: half - 1].all() and not zoomed.region[half + 1 :].any()


def test_a_region_mask_of_the_wrong_size_is_one_clear_line(tmp_path) -> None:
    root = _folder_with_region(tmp_path / "set", np.ones((100, 80), np.uint8))
    path = root / "regions" / "dsb_fluorescence.tif"
    with pytest.raises(DatasetError) as info:
        scan_training_folders([root])
    assert info.value.problems == [
        f"{path}: region mask of size 100 x 80 differs from its image (256 x 256, Y x X); "
        "save it at the image's size, or delete it to count the whole image"
    ]
    bad = TrainingPair(
        root / "images" / "dsb_fluorescence.png",
        root / "masks" / "dsb_fluorescence.tif",
        "set",
        "dsb_fluorescence",
        path,
    )
    with pytest.raises(CellsegError) as error:
        load_region(bad, (256, 256))
    assert "\n" not in str(error.value) and str(error.value).startswith(f"{path}: region mask")


def test_a_region_without_an_image_or_marking_nothing_is_reported(tmp_path) -> None:
    root = _folder_with_region(tmp_path / "set", np.zeros((256, 256), np.uint8))
    tifffile.imwrite(root / "regions" / "stray.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(DatasetError) as info:
        scan_training_folders([root])
    text = "\n".join(info.value.problems)
    assert "stray.tif: region mask without an image named 'stray'" in text
    assert "dsb_fluorescence.tif: region mask marks nothing" in text


def test_validation_scores_only_inside_the_region() -> None:
    truth = np.zeros((8, 8), np.int32)
    truth[1:3, 1:3], truth[5:7, 5:7] = 1, 2
    region = np.zeros((8, 8), bool)
    region[:4, :4] = True
    item = ValidationImage("a", np.zeros((8, 8)), "YX", truth, region)
    wrong_outside = truth.copy()
    wrong_outside[5:7, 5:7] = 0
    wrong_outside[6:8, 0:2] = 9
    scored_truth, scored_pred = item.scored(wrong_outside)
    assert np.array_equal(scored_truth, scored_pred)  # what is outside does not count


def test_a_fine_tune_on_a_set_with_a_region_runs(tmp_path) -> None:
    root = _folder_with_region(tmp_path / "set")
    out = tmp_path / "ft.safetensors"
    params = TrainParams(
        family="unet",
        builder_args=TINY_UNET,
        epochs=1,
        batch_size=2,
        patch_size=64,
        samples_per_epoch=2,
        val_fraction=0.0,
        device="cpu",
        seed=0,
    )
    finished = fit([root], out, params, val=[root])
    assert finished.epochs_run == 1 and out.is_file()
    manifest = read_card(out).provenance["data_manifest"]
    assert [e.get("region") for e in manifest if e["name"] == "dsb_fluorescence"] == [
        "dsb_fluorescence.tif",
        "dsb_fluorescence.tif",
    ]


def test_the_edited_region_covers_the_edited_objects_with_a_margin() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[2:5, 3:6] = 4
    labels[12:15, 12:15] = 5
    boxes = object_boxes(labels, {4, 99})  # 99 was deleted: no pixels left
    region = edited_region(labels.shape, [*boxes, ((10, 11), (0, 1))], margin=2)
    assert region[0:7, 1:8].all() and region.dtype == np.uint8
    assert not region[12:15, 12:15].any()
    assert region[8:13, 0:3].all()
