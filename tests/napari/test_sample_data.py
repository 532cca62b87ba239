"""Sample data functions: image + ground-truth labels tuples of matching YX shape."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg._napari import _sample_data

samples = pytest.importorskip("napari_cellseg.io.samples")
SAMPLES = samples.list_samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.key for s in SAMPLES])
def test_sample_returns_image_and_labels(sample) -> None:
    layers = getattr(_sample_data, sample.key)()
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (image, image_kw, _), (labels, labels_kw, _) = layers
    yx = image.shape[:2] if image_kw.get("rgb") else image.shape[-2:]
    assert labels.shape == yx
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.max() > 0
    assert image_kw["name"] == sample.title
    assert labels_kw["name"] == f"{sample.title} · ground truth"
    if image_kw.get("rgb"):
        assert image.shape[-1] in (3, 4)
    else:
        assert image.ndim == 2


def test_all_three_dsb_samples_have_functions() -> None:
    for key in ("dsb_fluorescence", "dsb_brightfield", "dsb_he"):
        assert callable(getattr(_sample_data, key))


def test_grey_rgba_becomes_single_channel() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    out, rgb = _sample_data.display_array(rgba, "YXS")
    assert not rgb
    np.testing.assert_array_equal(out, grey)


def test_colour_rgba_keeps_colour_and_drops_constant_alpha() -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (3, 4, 3), dtype=np.uint8)
    rgba = np.concatenate([colour, np.full((3, 4, 1), 255, np.uint8)], axis=-1)
    out, rgb = _sample_data.display_array(rgba, "YXS")
    assert rgb
    np.testing.assert_array_equal(out, colour)


def test_varying_alpha_is_kept() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 10
    rgba[0, 0, 3] = 1
    out, rgb = _sample_data.display_array(rgba, "YXS")
    assert rgb and out.shape == (2, 2, 4)


def test_grey_and_volumes_pass_through() -> None:
    img = np.zeros((5, 6), np.float32)
    out, rgb = _sample_data.display_array(img, "YX")
    assert out is img and not rgb
    vol = np.zeros((2, 5, 6), np.uint16)
    out, rgb = _sample_data.display_array(vol, "ZYX")
    assert out is vol and not rgb
