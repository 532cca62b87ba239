"""Training targets from instance masks, and the training / validation datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.training.augment import build_augmentation
from napari_cellseg.training.datasets import (
    CropDataset,
    FullImageDataset,
    collate_maskrcnn,
    collate_unet,
)
from napari_cellseg.training.targets import maskrcnn_target, unet_target

THREE = ["background", "interior", "boundary"]
TWO = ["background", "foreground"]
ONE = ["foreground"]


def _touching_squares() -> np.ndarray:
    labels = np.zeros((8, 12), np.uint16)
    labels[1:7, 1:6] = 1  # rows 1..6, cols 1..5
    labels[1:7, 6:11] = 2  # rows 1..6, cols 6..10, touching 1 along cols 5 | 6
    return labels


def test_three_class_target_marks_boundaries_between_touching_objects() -> None:
    target = unet_target(_touching_squares(), THREE)
    assert target.dtype == torch.int64 and target.shape == (8, 12)
    expected = np.zeros((8, 12), np.int64)
    expected[1:7, 1:11] = 2
    expected[2:6, 2:5] = 1  # interior of object 1: its column 5 borders object 2
    expected[2:6, 7:10] = 1  # interior of object 2: its column 6 borders object 1
    np.testing.assert_array_equal(target.numpy(), expected)


def test_single_object_ring_and_torch_input() -> None:
    labels = torch.zeros(7, 7, dtype=torch.int32)
    labels[1:6, 1:6] = 9
    target = unet_target(labels, THREE).numpy()
    assert (target == 2).sum() == 16 and (target == 1).sum() == 9
    assert target[3, 3] == 1 and target[1, 1] == 2 and target[0, 0] == 0


def test_two_and_one_output_targets() -> None:
    labels = _touching_squares()
    two = unet_target(labels, TWO)
    assert two.dtype == torch.int64 and two.shape == labels.shape
    np.testing.assert_array_equal(two.numpy(), labels > 0)
    one = unet_target(labels, ONE)
    assert one.dtype == torch.float32 and one.shape == (1, *labels.shape)
    np.testing.assert_array_equal(one[0].numpy(), (labels > 0).astype(np.float32))
    with pytest.raises(CellsegError, match="outputs"):
        unet_target(labels, ["class_0", "class_1", "class_2", "class_3"])
    with pytest.raises(CellsegError, match="integers"):
        unet_target(labels.astype(np.float32), TWO)


def test_maskrcnn_boxes_are_exact() -> None:
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 3:9] = 3  # rows 2..4, cols 3..8
    labels[7, 10] = 7  # one pixel; labels need not be consecutive
    target = maskrcnn_target(labels)
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [[3.0, 2.0, 9.0, 5.0], [10.0, 7.0, 11.0, 8.0]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1, 1]
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 10, 12)
    np.testing.assert_array_equal(masks[0].numpy(), labels == 3)
    np.testing.assert_array_equal(masks[1].numpy(), labels == 7)


def test_maskrcnn_touching_objects_and_empty_mask() -> None:
    target = maskrcnn_target(_touching_squares())
    assert target["boxes"].tolist() == [[1.0, 1.0, 6.0, 7.0], [6.0, 1.0, 11.0, 7.0]]
    empty = maskrcnn_target(np.zeros((5, 6), np.uint16))
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64
    assert empty["masks"].shape == (0, 5, 6) and empty["masks"].dtype == torch.uint8


def _items() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    big = np.zeros((96, 80), np.int32)
    big[10:30, 10:30], big[30:50, 10:30], big[60:80, 40:70] = 1, 2, 3
    small = np.zeros((20, 30), np.int32)  # smaller than the patch
    small[5:12, 8:16] = 1
    return [
        (rng.random((3, 96, 80), dtype=np.float32), big),
        (rng.random((3, 20, 30), dtype=np.float32), small),
    ]


@pytest.mark.parametrize("augment", [False, True])
def test_unet_crops_shapes_and_types(augment: bool) -> None:
    dataset = CropDataset(
        _items(),
        family="unet",
        outputs=THREE,
        patch_size=64,
        samples_per_epoch=12,
        augment=build_augmentation(rgb_histology=False) if augment else None,
        seed=0,
    )
    assert len(dataset) == 12
    batch = [dataset[i] for i in range(len(dataset))]
    for image, target in batch:
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert target.shape == (64, 64) and target.dtype == torch.int64
        assert set(torch.unique(target).tolist()) <= {0, 1, 2}
    images, targets = collate_unet(batch[:4])
    assert images.shape == (4, 3, 64, 64) and targets.shape == (4, 64, 64)
    with pytest.raises(IndexError):
        dataset[12]


def test_maskrcnn_crops_and_collate() -> None:
    dataset = CropDataset(
        _items(),
        family="maskrcnn",
        outputs=["background", "object"],
        patch_size=48,
        samples_per_epoch=10,
        augment=build_augmentation(rgb_histology=True),
        seed=1,
    )
    batch = [dataset[i] for i in range(len(dataset))]
    for image, target in batch:
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 48, 48)
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    images, targets = collate_maskrcnn(batch[:3])
    assert isinstance(images, list) and len(images) == 3 and isinstance(targets[0], dict)


def test_crops_without_objects() -> None:
    items = [(np.ones((1, 40, 40), np.float32), np.zeros((40, 40), np.int32))]
    for family, outputs in (("unet", ONE), ("maskrcnn", [])):
        dataset = CropDataset(
            items,
            family=family,
            outputs=outputs,
            patch_size=32,
            samples_per_epoch=3,
            augment=build_augmentation(rgb_histology=False),
            seed=0,
        )
        image, target = dataset[0]
        assert image.shape == (1, 32, 32)
        if family == "unet":
            assert target.shape == (1, 32, 32) and target.sum() == 0
        else:
            assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 32, 32)


def test_small_image_is_reflected_and_copies_are_separate_objects() -> None:
    labels = np.zeros((12, 12), np.int32)
    labels[4:8, 4:8] = 1  # away from the border: every reflected copy is its own object
    items = [(np.ones((1, 12, 12), np.float32), labels)]
    dataset = CropDataset(
        items, family="maskrcnn", outputs=[], patch_size=32, samples_per_epoch=4,
        augment=None, seed=0, foreground_bias=0.0,
    )  # fmt: skip
    for i in range(len(dataset)):
        image, target = dataset[i]
        assert image.shape == (1, 32, 32) and torch.all(image == 1)
        widths = target["boxes"][:, 2:] - target["boxes"][:, :2]
        assert len(widths) >= 4 and torch.all(widths <= 4)
        assert target["masks"].sum(dim=(1, 2)).max() <= 16


def test_samples_depend_only_on_seed_epoch_and_index() -> None:
    def make(seed: int) -> CropDataset:
        return CropDataset(
            _items(), family="unet", outputs=TWO, patch_size=32, samples_per_epoch=6,
            augment=build_augmentation(rgb_histology=False), seed=seed,
        )  # fmt: skip

    a, b, c = make(0), make(0), make(1)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = a[4]
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is left alone
    _ = b[0], b[2]  # another order of access
    assert torch.equal(b[4][0], first[0]) and torch.equal(b[4][1], first[1])
    assert not torch.equal(c[4][0], first[0])
    a.set_epoch(1)
    assert not torch.equal(a[4][0], first[0])
    a.set_epoch(0)
    assert torch.equal(a[4][0], first[0])


def test_foreground_bias_centres_crops_on_objects() -> None:
    labels = np.zeros((200, 200), np.int32)
    labels[150:160, 20:30] = 1
    items = [(np.zeros((1, 200, 200), np.float32), labels)]

    def with_object(bias: float) -> int:
        dataset = CropDataset(
            items, family="unet", outputs=TWO, patch_size=32, samples_per_epoch=20,
            augment=None, seed=0, foreground_bias=bias,
        )  # fmt: skip
        return sum(int(dataset[i][1].sum() > 0) for i in range(len(dataset)))

    assert with_object(1.0) == 20
    assert with_object(0.0) < 10


def test_bad_dataset_arguments() -> None:
    with pytest.raises(CellsegError, match="family"):
        CropDataset(_items(), family="yolo", outputs=TWO, patch_size=32,
                    samples_per_epoch=1, augment=None, seed=0)  # fmt: skip
    with pytest.raises(CellsegError, match="same size"):
        FullImageDataset([(np.zeros((1, 8, 8), np.float32), np.zeros((8, 9), np.int32))])
    with pytest.raises(CellsegError, match="at least one"):
        FullImageDataset([])


def test_full_image_dataset() -> None:
    dataset = FullImageDataset(_items())
    assert len(dataset) == 2
    image, instances = dataset[1]
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert instances.shape == (20, 30) and instances.dtype == torch.int64
    np.testing.assert_array_equal(instances.numpy(), _items()[1][1])
