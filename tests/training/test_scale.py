"""Size-normalised training: diameters measured from masks, crops and validation rescaled."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from skimage.measure import regionprops

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Notice, drain
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import ModelCard, load_weights, read_card
from napari_cellseg.models.card import DIAMETER_RANGE
from napari_cellseg.params import TRAIN_DIAMETER_RANGE, TrainParams
from napari_cellseg.training.datasets import CropDataset
from napari_cellseg.training.loop import iter_train
from napari_cellseg.training.scale import (
    diameter_stats,
    draw_scale,
    measure_diameter,
    nearest_index,
)
from napari_cellseg.training.validation import ValidationImage, at_training_scale
from tiny_models import TINY_UNET, save_tiny


def _discs(shape: tuple[int, int], diameter: float, spacing: int) -> np.ndarray:
    """Non-touching discs of ``diameter`` on a grid, labelled 1..N."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = diameter / 2
    n = 0
    for cy in range(spacing // 2, shape[0] - spacing // 2 + 1, spacing):
        for cx in range(spacing // 2, shape[1] - spacing // 2 + 1, spacing):
            n += 1
            labels[(yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= r * r] = n
    return labels


def _object_diameters(masks: torch.Tensor) -> list[float]:
    """Equivalent diameters of Mask R-CNN target masks that do not touch the crop border."""
    out = []
    for mask in masks.numpy().astype(bool):
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            continue
        out.append(math.sqrt(4 * mask.sum() / math.pi))
    return out


def test_ranges_agree_with_the_card() -> None:
    assert TRAIN_DIAMETER_RANGE == DIAMETER_RANGE


@pytest.mark.parametrize("diameter", [8.0, 17.0, 40.0])
def test_measured_diameter_of_discs(diameter: float) -> None:
    labels = _discs((200, 200), diameter, spacing=int(diameter) + 10)
    measured = measure_diameter(labels)
    assert measured == pytest.approx(diameter, rel=0.04)
    skimage_median = np.median([r.equivalent_diameter_area for r in regionprops(labels)])
    assert measured == pytest.approx(skimage_median)
    assert measure_diameter(np.zeros((9, 9), np.int32)) is None


def test_diameter_stats_and_jitter() -> None:
    stats = diameter_stats([10.0, 20.0, None, 30.0])
    assert stats["n_images"] == 4 and stats["n_with_objects"] == 3 and stats["median"] == 20.0
    assert diameter_stats([None])["median"] is None
    rng = np.random.default_rng(0)
    draws = [draw_scale(rng, 2.0, 0.2) for _ in range(200)]
    assert min(draws) >= 2.0 / 1.2 and max(draws) <= 2.0 * 1.2 and np.std(draws) > 0.1
    assert draw_scale(rng, 2.0, 0.0) == 2.0
    assert nearest_index(3, 3).tolist() == [0, 1, 2]


def test_zoomed_crop_keeps_scaled_area_and_identity() -> None:
    labels = _discs((240, 240), 40.0, spacing=60)
    image = labels[None].astype(np.float32)  # each object's pixels hold its own label
    dataset = CropDataset(
        [(image, labels)], family="maskrcnn", outputs=[], patch_size=64,
        samples_per_epoch=8, augment=None, seed=0, object_diameter=20.0,
    )  # fmt: skip
    assert dataset.diameters[0] == pytest.approx(40.0, rel=0.03)
    for seed in range(8):
        crop_image, crop_labels = dataset._cut(np.random.default_rng(seed))
        assert crop_image.shape == (1, 64, 64) and crop_labels.shape == (64, 64)
        for value in np.unique(crop_labels[crop_labels > 0]):
            inside = crop_labels == value
            # instance identity: the image under a label is that object's pixels (blended
            # with background at its edge, never with another object)
            under = crop_image[0][inside]
            assert under.min() >= value / 4 - 1e-5 and under.max() <= value + 1e-5  # 2x2 blocks
            if inside.sum() >= 30:
                assert np.median(under) == pytest.approx(value)
            border = inside[0].any() or inside[-1].any() or inside[:, 0].any()
            if not (border or inside[:, -1].any()):
                scaled_area = math.pi * 20.0**2 / 4  # a 40 px disc shrunk by 2
                assert inside.sum() == pytest.approx(scaled_area, rel=0.1)


def test_twice_larger_objects_come_out_near_the_target() -> None:
    small = _discs((160, 160), 16.0, spacing=32)
    large = _discs((320, 320), 32.0, spacing=64)
    items = [(small[None].astype(np.float32), small), (large[None].astype(np.float32), large)]
    dataset = CropDataset(
        items, family="maskrcnn", outputs=[], patch_size=96, samples_per_epoch=16,
        augment=None, seed=0, foreground_bias=1.0, object_diameter=24.0, scale_jitter=0.0,
    )  # fmt: skip
    assert dataset.factors == pytest.approx([1.5, 0.75], rel=0.03)
    diameters = [d for i in range(len(dataset)) for d in _object_diameters(dataset[i][1]["masks"])]
    assert len(diameters) > 20
    assert np.median(diameters) == pytest.approx(24.0, rel=0.08)
    assert max(diameters) < 24.0 * 1.2 and min(diameters) > 24.0 / 1.2


def _fingerprint(dataset: CropDataset) -> str:
    h = hashlib.sha256()
    for i in range(len(dataset)):
        image, target = dataset[i]
        h.update(np.round(image.numpy(), 3).tobytes())
        for value in target.values() if isinstance(target, dict) else [target]:
            h.update(value.numpy().tobytes())
    return h.hexdigest()[:16]


def _items() -> list:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:120, :100]
    big = np.zeros((120, 100), np.int32)
    for i, (cy, cx, r) in enumerate([(30, 30, 12), (80, 60, 20), (100, 20, 8)], 1):
        big[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    small = np.zeros((20, 30), np.int32)
    small[5:12, 8:16] = 1
    return [
        (rng.random((3, 120, 100), dtype=np.float32), big),
        (rng.random((3, 20, 30), dtype=np.float32), small),
    ]


# Crops of _items() (seed 5, patch 32, no augmentation) made before object sizes existed.
OLD_CROPS = {"unet": "8e5c78879f5a02cc", "maskrcnn": "04083f1d37e75890"}


@pytest.mark.parametrize("family", ["unet", "maskrcnn"])
@pytest.mark.parametrize("diameter", [None, 0.0])
def test_rescaling_off_gives_the_old_crops_exactly(family: str, diameter) -> None:
    from napari_cellseg.training.augment import build_augmentation

    outputs = ["background", "interior", "boundary"] if family == "unet" else []

    def make(augment: bool, **size) -> CropDataset:
        return CropDataset(
            _items(), family=family, outputs=outputs, patch_size=32, samples_per_epoch=6,
            augment=build_augmentation(rgb_histology=False) if augment else None, seed=5,
            **size,
        )  # fmt: skip

    off = {"object_diameter": diameter, "scale_jitter": 0.5}
    assert _fingerprint(make(False, **off)) == OLD_CROPS[family]
    assert _fingerprint(make(True, **off)) == _fingerprint(make(True))
    assert _fingerprint(make(False, object_diameter=20.0)) != OLD_CROPS[family]


@pytest.mark.parametrize("axes", ["YX", "YXS"])
def test_validation_images_are_brought_to_the_training_scale(axes: str) -> None:
    truth = _discs((200, 200), 40.0, spacing=60)
    image = (truth > 0).astype(np.uint8) * 200
    if axes == "YXS":
        image = np.repeat(image[..., None], 3, axis=-1)
    empty = ValidationImage("empty", image, axes, np.zeros_like(truth))
    (scaled, same), diameters = at_training_scale(
        [ValidationImage("discs", image, axes, truth), empty], 20.0
    )
    assert diameters[0] == pytest.approx(40.0, rel=0.03) and diameters[1] is None
    assert same is empty  # no objects: not rescaled
    assert scaled.truth.shape == (100, 100) and scaled.image.dtype == np.uint8
    assert scaled.image.shape == ((100, 100) if axes == "YX" else (100, 100, 3))
    assert measure_diameter(scaled.truth) == pytest.approx(20.0, rel=0.05)
    assert len(np.unique(scaled.truth)) == len(np.unique(truth))  # every object kept
    assert at_training_scale([empty], 0.0)[0][0] is empty


def _fit_params(**kw) -> TrainParams:
    base = {
        "family": "unet", "builder_args": TINY_UNET, "epochs": 1, "batch_size": 2,
        "patch_size": 64, "samples_per_epoch": 2, "val_fraction": 0.34, "device": "cpu",
        "seed": 3, "early_stopping_patience": None,
    }  # fmt: skip
    return TrainParams(**{**base, **kw})


def test_a_fit_writes_the_object_diameter_into_the_card(tmp_path) -> None:
    out = tmp_path / "sized.safetensors"
    drain(iter_train([sample_data_dir()], out, _fit_params()))
    card = read_card(out)
    assert card.object_diameter == 20.0
    assert card.object_diameter_source == (
        "training masks: median equivalent diameter per image, rescaled to 20 px (jitter 0.2)"
    )
    size = card.provenance["object_size"]
    assert size["object_diameter"] == 20.0 and size["scale_jitter"] == 0.2
    assert size["train_diameters"]["n_images"] == 2 and size["val_diameters"]["n_images"] == 1
    assert 5 < size["train_diameters"]["median"] < 50
    assert size["train_diameters"]["p5"] <= size["train_diameters"]["p95"]
    assert card.provenance["training"]["object_diameter"] == 20.0


def test_off_records_the_measured_size_and_fine_tuning_keeps_the_base_size(tmp_path) -> None:
    out = tmp_path / "off.safetensors"
    drain(iter_train([sample_data_dir()], out, _fit_params(object_diameter=0)))
    card = read_card(out)
    measured = card.provenance["object_size"]["train_diameters"]["median"]
    assert card.object_diameter == pytest.approx(measured)
    assert card.object_diameter_source.endswith("not rescaled")

    base = save_tiny("unet", tmp_path / "base.safetensors")
    assert load_weights(base).card.object_diameter is None  # the default, 18 px, is assumed
    tuned = tmp_path / "tuned.safetensors"
    events: list = []
    drain(iter_train([sample_data_dir()], tuned, _fit_params(), init=base), events.append)
    tuned_card = read_card(tuned)
    assert tuned_card.provenance["training"]["object_diameter"] == 18.0  # trained at 18 px
    if tuned_card.provenance.get("kept_base"):  # no epoch beat the random base: its card
        assert tuned_card.object_diameter is None
    else:
        assert tuned_card.object_diameter == 18.0
        sizes = tuned_card.provenance["object_size"]["train_diameters"]
        assert tuned_card.default_diameter == pytest.approx(sizes["median"])
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert "fine-tuning at the base model's object diameter, 18 px" in notes


def test_a_fine_tunes_card_assumes_the_object_size_of_its_images() -> None:
    """Glands 150 px across fine-tuned at a nuclei model's 20 px: new images of that kind
    are shrunk as the corrected ones were, not estimated from scratch (Cellpose's
    ``diam_labels``); a model trained from scratch keeps ``auto``."""
    from napari_cellseg.training.provenance import trained_card

    card = ModelCard.for_model("unet", TINY_UNET, object_diameter=20)
    size = {"object_diameter": 20.0, "scale_jitter": 0.2, "train_diameters": {"median": 150.0}}
    tuned = trained_card(card, _fit_params(), [], [], 1, {}, "base.safetensors", size)
    assert (tuned.object_diameter, tuned.default_diameter) == (20.0, 150.0)
    assert ModelCard.from_json(tuned.to_json()).default_diameter == 150.0
    assert trained_card(card, _fit_params(), [], [], 1, {}, None, size).default_diameter is None
    unknown = {**size, "train_diameters": {"median": None}}
    assert trained_card(card, _fit_params(), [], [], 1, {}, "b", unknown).default_diameter is None


def test_a_fine_tune_on_images_of_mixed_sizes_keeps_auto() -> None:
    """All of DSB 2018 (nuclei 10-50 px: 95th percentile 5.2x the 5th) has no one size to
    assume; three gland images of 100-300 px still do."""
    from napari_cellseg.training.provenance import trained_card
    from napari_cellseg.training.scale import CONSISTENT_SIZE_SPREAD

    card = ModelCard.for_model("unet", TINY_UNET, object_diameter=20)
    dsb = {"median": 18.4, "p5": 9.6, "p95": 49.7}
    glands = {"median": 144.0, "p5": 98.0, "p95": 300.0}
    for stats, expected in ((dsb, None), (glands, 144.0)):
        size = {"object_diameter": 20.0, "scale_jitter": 0.2, "train_diameters": stats}
        tuned = trained_card(card, _fit_params(), [], [], 1, {}, "base.safetensors", size)
        assert tuned.default_diameter == expected
    assert 300.0 / 98.0 < CONSISTENT_SIZE_SPREAD < 49.7 / 9.6


def test_fine_tuning_far_from_the_objects_size_warns(tmp_path) -> None:
    base = save_tiny("unet", tmp_path / "base.safetensors")
    events: list = []
    out = tmp_path / "tuned.safetensors"
    drain(iter_train([sample_data_dir()], out, _fit_params(object_diameter=3), init=base),
          events.append)  # fmt: skip
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert any("shrinks the training images" in w for w in warnings)
    events.clear()
    drain(iter_train([sample_data_dir()], out, _fit_params(), init=base), events.append)
    assert not any("training images" in e.message for e in events if isinstance(e, Notice))


def test_cli_object_diameter_options(tmp_path, capsys) -> None:
    from napari_cellseg.cli import main
    from napari_cellseg.cli.train import _diameter

    assert _diameter("none") == 0.0 and _diameter("0") == 0.0 and _diameter("OFF") == 0.0
    assert _diameter("auto") is None and _diameter("25") == 25.0
    base = ["train", "--data", str(sample_data_dir()), "--out", str(tmp_path / "o.safetensors")]
    for value in ("1", "501"):
        assert main([*base, "--object-diameter", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("cellseg: error: object diameter must be 0 (off) or between 2")
    assert main([*base, "--scale-jitter", "2"]) == 2
    assert "scale_jitter must be between 0 and 1, got 2.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--object-diameter", "big"])
    assert "is not a diameter" in capsys.readouterr().err
    with pytest.raises(CellsegError, match="object diameter must be 0"):
        TrainParams(object_diameter=1.5)
