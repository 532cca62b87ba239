"""Joint image + mask augmentation: alignment, exactness, determinism, stain jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import hed2rgb, rgb2hed
from skimage.draw import disk

from napari_cellseg.errors import CellsegError
from napari_cellseg.training.augment import (
    AUGMENTATIONS,
    STRENGTHS,
    Augmentation,
    build_augmentation,
    hed_to_rgb,
    rgb_to_hed,
)

GEOMETRIC = ("flip", "rot90", "affine", "elastic")


def _mask(size: int = 128) -> torch.Tensor:
    mask = np.zeros((size, size), np.int64)
    centres = [(32, 32), (32, 90), (92, 36), (88, 94)]
    for label, (cy, cx) in enumerate(centres, start=1):
        mask[disk((cy, cx), size // 6, shape=mask.shape)] = label
    mask[size * 7 // 16 : size * 9 // 16, size * 7 // 16 : size * 9 // 16] = 5  # square
    return torch.from_numpy(mask)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def _dihedral(t: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(t, k, (-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_listing_matches_steps() -> None:
    grey = build_augmentation(rgb_histology=False)
    rgb = build_augmentation(rgb_histology=True)
    assert set(rgb.names) == set(AUGMENTATIONS)
    assert "stain" not in grey.names and "stain" in rgb.names
    assert list(rgb.names) == list(AUGMENTATIONS)  # listed in the order they run
    assert "stain" in repr(rgb)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_image_and_mask_stay_aligned(strength: str) -> None:
    full = build_augmentation(rgb_histology=False, strength=strength)
    geometric = Augmentation([(n, s) for n, s in full.steps if n in GEOMETRIC])
    mask = _mask()
    image = (mask > 0).float()[None]
    labels_before = set(torch.unique(mask).tolist())
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_mask = geometric(image, mask)
        assert out_image.shape == image.shape and out_image.dtype == torch.float32
        assert out_mask.shape == mask.shape and out_mask.dtype == torch.int64
        assert set(torch.unique(out_mask).tolist()) <= labels_before  # nearest: no new labels
        assert _iou(out_image[0] > 0.5, out_mask > 0) >= 0.95, seed
        # The full pipeline also shifts, rescales, blurs and adds noise to the intensities:
        # threshold halfway between the mean foreground and background values.
        torch.manual_seed(seed)
        out_image, out_mask = full(image, mask)
        inside, outside = out_image[0][out_mask > 0].mean(), out_image[0][out_mask == 0].mean()
        assert _iou(out_image[0] > (inside + outside) / 2, out_mask > 0) >= 0.95, seed
    assert torch.equal(image, (mask > 0).float()[None])  # inputs untouched


def test_flips_and_rot90_are_exact() -> None:
    full = build_augmentation(rgb_histology=False)
    geometric = Augmentation([(n, s) for n, s in full.steps if n in ("flip", "rot90")])
    assert geometric.names == ("flip", "rot90")
    mask = _mask()
    image = torch.stack([(mask > 0).float(), mask.float() / 10])
    seen = set()
    for seed in range(24):
        torch.manual_seed(seed)
        out_image, out_mask = geometric(image, mask)
        candidates = [i for i, m in enumerate(_dihedral(mask)) if torch.equal(m, out_mask)]
        assert candidates, seed
        assert torch.equal(out_image, _dihedral(image)[candidates[0]])
        seen.add(candidates[0])
    assert len(seen) >= 5  # the flips and rotations really vary


def test_non_square_keeps_shape() -> None:
    augment = build_augmentation(rgb_histology=False, strength="strong")
    image, mask = torch.rand(2, 40, 64), torch.zeros(40, 64, dtype=torch.int32)
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = augment(image, mask)
        assert out_image.shape == (2, 40, 64) and out_mask.shape == (40, 64)


def test_same_seed_same_result_different_seed_different() -> None:
    augment = build_augmentation(rgb_histology=True)
    mask = _mask(64)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        return augment(image, mask)

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_hed_conversion_matches_scikit_image() -> None:
    rgb = np.random.default_rng(1).uniform(0.05, 1.0, (16, 12, 3))
    hed = rgb_to_hed(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    scale = -np.log(1e-6)  # skimage divides optical densities by -log(1e-6), clips at 0
    np.testing.assert_allclose(np.maximum(hed / scale, 0), rgb2hed(rgb), atol=1e-10)
    back = hed_to_rgb(torch.from_numpy(hed).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, rgb, atol=1e-10)
    clipped = torch.from_numpy(rgb2hed(rgb) * scale).permute(2, 0, 1)
    np.testing.assert_allclose(
        hed_to_rgb(clipped).permute(1, 2, 0).numpy(), hed2rgb(rgb2hed(rgb)), atol=1e-10
    )


def _stain_only(augment: Augmentation) -> Augmentation:
    (step,) = [s for n, s in augment.steps if n == "stain"]
    step.p = 1.0
    return Augmentation([("stain", step)])


def test_stain_jitter_changes_rgb_only() -> None:
    stain = _stain_only(build_augmentation(rgb_histology=True, strength="strong"))
    he = torch.tensor([0.55, 0.25, 0.6]).view(3, 1, 1) * torch.ones(3, 32, 32)
    he[:, 8:24, 8:24] = torch.tensor([0.9, 0.6, 0.85]).view(3, 1, 1)
    he[:, 0, 0], he[:, -1, -1] = 0.0, 1.0
    mask = torch.zeros(32, 32, dtype=torch.int64)
    mask[8:24, 8:24] = 1
    torch.manual_seed(0)
    out_image, out_mask = stain(he, mask)
    assert not torch.allclose(out_image, he, atol=1e-3)
    assert out_image.min() >= 0.0 and out_image.max() <= 1.0 + 1e-6
    assert torch.equal(out_mask, mask)
    # Pixels of the same colour stay the same colour (a global colour transform).
    assert torch.allclose(out_image[:, 10:20, 10:20], out_image[:, 12:13, 12:13].expand(3, 10, 10))
    grey = torch.rand(1, 32, 32)
    torch.manual_seed(0)
    assert torch.equal(stain(grey, mask)[0], grey)  # not RGB: untouched


def test_bad_inputs_are_rejected() -> None:
    augment = build_augmentation(rgb_histology=False)
    with pytest.raises(CellsegError, match="float"):
        augment(torch.zeros(1, 8, 8, dtype=torch.uint8), torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(CellsegError, match="mask"):
        augment(torch.zeros(1, 8, 8), torch.zeros(8, 9, dtype=torch.int64))
    with pytest.raises(CellsegError, match="strength"):
        build_augmentation(rgb_histology=False, strength="extreme")


def test_flat_image_survives_intensity_steps() -> None:
    augment = build_augmentation(rgb_histology=True, strength="strong")
    for seed in range(6):
        torch.manual_seed(seed)
        out, _ = augment(torch.zeros(3, 32, 32), torch.zeros(32, 32, dtype=torch.int64))
        assert torch.isfinite(out).all()
