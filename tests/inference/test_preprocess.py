"""Input checks, axes, planes, channels and normalisation (napari_cellseg.inference.preprocess)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.inference import preprocess
from napari_cellseg.inference.preprocess import (
    check_axes,
    check_image,
    guess_axes,
    iter_planes,
    label_axes,
    label_shape,
    normalise,
    plane_count,
    to_model_input,
)
from napari_cellseg.models import normalise as normalise_module
from napari_cellseg.models import percentile

DTYPE_RANGE = {"method": "dtype-range"}


@pytest.mark.parametrize("module", [preprocess, normalise_module])
def test_doctests(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- check_image -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64, bool])
def test_check_image_accepts_numeric(dtype: type) -> None:
    check_image(np.zeros((8, 8), dtype))


@pytest.mark.parametrize(
    ("image", "needles"),
    [
        (np.array([["a"] * 8] * 8), ["non-numeric", "<U1", "convert"]),
        (np.empty((8, 8), object), ["non-numeric", "object"]),
        (np.zeros((8, 8), np.complex64), ["complex", "np.abs"]),
        (np.zeros((0, 8)), ["empty", "(0, 8)"]),
        (np.zeros((3, 0, 8)), ["empty"]),
        (np.zeros((1, 1)), ["too small", "1 x 1", "at least 4 x 4"]),
        (np.zeros((64, 3)), ["too small", "64 x 3"]),
        (np.zeros(16), ["not a 2-D image", "(16,)"]),
        (np.zeros(()), ["not a 2-D image"]),
        (np.zeros((2, 2, 2, 2, 8, 8)), ["6 dimensions", "split the stack or choose a plane"]),
    ],
)
def test_check_image_rejects(image: np.ndarray, needles: list[str]) -> None:
    with pytest.raises(CellsegError) as info:
        check_image(image, "cells.tif")
    message = str(info.value)
    assert message.startswith("cells.tif ")
    for needle in needles:
        assert needle in message


def test_check_image_counts_nan_and_inf() -> None:
    image = np.zeros((8, 8), np.float32)
    image[0, :3] = np.nan
    image[1, 0] = np.inf
    image[1, 1] = -np.inf
    with pytest.raises(CellsegError, match=r"3 NaN and 2 infinite values.*nan_to_num"):
        check_image(image)


def test_check_image_uses_axes_for_the_plane_size() -> None:
    check_image(np.zeros((2, 16, 16)), axes="ZYX")  # 2 planes is fine
    with pytest.raises(CellsegError, match="too small"):
        check_image(np.zeros((16, 16, 2)), axes="ZYX")
    with pytest.raises(CellsegError, match="letters"):
        check_image(np.zeros((16, 16)), axes="ZYX")


# --- axes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "rgb", "axes"),
    [
        ((64, 32), None, "YX"),
        ((64, 32, 3), None, "YXS"),
        ((64, 32, 4), None, "YXS"),
        ((64, 32, 3), False, "ZYX"),
        ((64, 32, 2), True, "YXS"),
        ((5, 64, 32), None, "ZYX"),
        ((5, 64, 32, 3), None, "ZYXS"),
        ((5, 2, 64, 32), None, "ZCYX"),
        ((5, 4, 64, 32), None, "ZCYX"),
        ((5, 7, 64, 32), None, "TZYX"),
        ((5, 64, 32, 4), False, "TZYX"),
        ((2, 3, 2, 64, 32), None, "TZCYX"),
        ((2, 3, 64, 32, 3), None, "TZYXS"),
    ],
)
def test_guess_axes(shape: tuple[int, ...], rgb: bool | None, axes: str) -> None:
    assert guess_axes(shape, rgb=rgb) == axes


def test_guess_axes_rejects_1d() -> None:
    with pytest.raises(CellsegError, match="1-D"):
        guess_axes((10,))


@pytest.mark.parametrize(
    ("shape", "axes", "needle"),
    [
        ((16, 16), "YXZ", "3 letters but the image has 2"),
        ((16, 16), "YQ", "unknown letters 'Q'"),
        ((16, 16), "YY", "repeat 'Y'"),
        ((16, 16), "ZY", "both Y and X"),
        ((16, 16), "XY", "X before Y"),
    ],
)
def test_check_axes_rejects(shape: tuple[int, ...], axes: str, needle: str) -> None:
    with pytest.raises(CellsegError, match=needle):
        check_axes(shape, axes)


def test_check_axes_rejects_channels_and_samples() -> None:
    with pytest.raises(CellsegError, match="both channels"):
        check_axes((2, 16, 16, 3), "CYXS")


def test_check_axes_upper_cases() -> None:
    assert check_axes((3, 16, 16), "cyx") == "CYX"


# --- planes ------------------------------------------------------------------------------


def _numbered(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape)


def test_iter_planes_2d_yields_one_plane() -> None:
    image = _numbered((8, 9))
    planes = list(iter_planes(image, "YX"))
    assert len(planes) == 1
    assert planes[0][0] == ()
    np.testing.assert_array_equal(planes[0][1], image)
    assert plane_count(image.shape, "YX") == 1
    assert label_shape(image.shape, "YX") == (8, 9)


def test_iter_planes_zyx() -> None:
    image = _numbered((3, 8, 9))
    planes = list(iter_planes(image, "ZYX"))
    assert [idx for idx, _ in planes] == [(0,), (1,), (2,)]
    for (z,), plane in planes:
        np.testing.assert_array_equal(plane, image[z])
    assert plane_count(image.shape, "ZYX") == 3
    assert label_shape(image.shape, "ZYX") == (3, 8, 9)
    assert label_axes("ZYX") == "ZYX"


def test_iter_planes_tzyx() -> None:
    image = _numbered((2, 3, 8, 9))
    planes = list(iter_planes(image, "TZYX"))
    assert len(planes) == plane_count(image.shape, "TZYX") == 6
    for (t, z), plane in planes:
        np.testing.assert_array_equal(plane, image[t, z])
    assert label_shape(image.shape, "TZYX") == (2, 3, 8, 9)


def test_iter_planes_zyxs_keeps_samples_last() -> None:
    image = _numbered((2, 8, 9, 3))
    planes = list(iter_planes(image, "ZYXS"))
    assert [idx for idx, _ in planes] == [(0,), (1,)]
    for (z,), plane in planes:
        assert plane.shape == (8, 9, 3)
        np.testing.assert_array_equal(plane, image[z])
    assert label_shape(image.shape, "ZYXS") == (2, 8, 9)
    assert label_axes("ZYXS") == "ZYX"


def test_iter_planes_zcyx_moves_channels_last() -> None:
    image = _numbered((4, 2, 8, 9))
    planes = list(iter_planes(image, "ZCYX"))
    assert len(planes) == 4
    for (z,), plane in planes:
        assert plane.shape == (8, 9, 2)
        np.testing.assert_array_equal(plane[..., 1], image[z, 1])
    assert label_shape(image.shape, "ZCYX") == (4, 8, 9)


def test_iter_planes_fill_a_label_stack() -> None:
    image = _numbered((2, 2, 3, 8, 9))
    labels = np.zeros(label_shape(image.shape, "TCZYX"), np.uint16)
    assert labels.shape == (2, 3, 8, 9)
    assert label_axes("TCZYX") == "TZYX"
    for idx, plane in iter_planes(image, "TCZYX"):
        assert plane.shape == (8, 9, 2)
        labels[idx] = 1
    assert labels.all()


# --- channel mapping ---------------------------------------------------------------------


def test_grey_to_rgb_replicates() -> None:
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    x = to_model_input(grey, input_channels=3, channel_handling="rgb", normalisation=DTYPE_RANGE)
    assert x.shape == (3, 4, 5)
    assert x.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(x[c], grey / 255.0, rtol=1e-6)


def test_single_channel_plane_to_rgb() -> None:
    plane = np.full((4, 5, 1), 255, np.uint8)
    x = to_model_input(plane, input_channels=3, channel_handling="rgb", normalisation=DTYPE_RANGE)
    np.testing.assert_array_equal(x, np.ones((3, 4, 5), np.float32))


def test_rgba_to_rgb_drops_alpha() -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255
    x = to_model_input(rgba, input_channels=3, channel_handling="rgb", normalisation=DTYPE_RANGE)
    assert x.shape == (3, 4, 5)
    np.testing.assert_allclose(x[:, 0, 0], np.array([10, 20, 30]) / 255.0, rtol=1e-6)


def test_rgb_to_grey_is_luminance() -> None:
    from skimage.color import rgb2gray

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    x = to_model_input(rgb, input_channels=1, channel_handling="grey", normalisation=DTYPE_RANGE)
    assert x.shape == (1, 6, 7)
    np.testing.assert_allclose(x[0], rgb2gray(rgb), atol=1e-6)


def test_grey_model_takes_grey_as_is() -> None:
    grey = np.full((4, 5), 65535, np.uint16)
    x = to_model_input(grey, input_channels=1, channel_handling="grey", normalisation=DTYPE_RANGE)
    np.testing.assert_array_equal(x, np.ones((1, 4, 5), np.float32))


def test_explicit_channels_pick_in_order() -> None:
    plane = np.stack([np.full((4, 5), v, np.uint8) for v in (0, 100, 200)], axis=-1)
    x = to_model_input(
        plane,
        input_channels=3,
        channel_handling="rgb",
        normalisation={"method": "none"},
        channels=(2, 0, 2),
    )
    np.testing.assert_array_equal(x[:, 0, 0], [200, 0, 200])
    y = to_model_input(
        plane,
        input_channels=2,
        channel_handling="channels",
        normalisation={"method": "none"},
        channels=[1, 2],
    )
    np.testing.assert_array_equal(y[:, 0, 0], [100, 200])


def test_explicit_channel_out_of_range() -> None:
    plane = np.zeros((4, 5, 2), np.uint8)
    with pytest.raises(CellsegError, match=r"channel index 5 is out of range: the image has 2"):
        to_model_input(
            plane,
            input_channels=1,
            channel_handling="grey",
            normalisation=DTYPE_RANGE,
            channels=(5,),
        )
    with pytest.raises(CellsegError, match=r"give the image's axes \(e.g. --axes CYX\)"):
        to_model_input(
            plane, input_channels=1, channel_handling="grey", normalisation=DTYPE_RANGE,
            channels=(2,),
        )  # fmt: skip


def test_explicit_channel_count_mismatch() -> None:
    plane = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(CellsegError, match="2 channels .* model takes 3"):
        to_model_input(
            plane,
            input_channels=3,
            channel_handling="rgb",
            normalisation=DTYPE_RANGE,
            channels=(0, 1),
        )


@pytest.mark.parametrize(
    ("shape", "handling", "input_channels", "needle"),
    [
        ((4, 5, 2), "rgb", 3, "has 2 channels but the model takes RGB"),
        ((4, 5, 5), "rgb", 3, "has 5 channels but the model takes RGB"),
        ((4, 5, 2), "grey", 1, "has 2 channels but the model takes one grey"),
        ((4, 5, 3), "channels", 2, "has 3 channels but the model takes 2"),
        ((4, 5), "channels", 2, "has 1 channel but the model takes 2"),
    ],
)
def test_wrong_channel_count_asks_for_channels(
    shape: tuple[int, ...], handling: str, input_channels: int, needle: str
) -> None:
    with pytest.raises(CellsegError, match=needle) as info:
        to_model_input(
            np.zeros(shape, np.uint8),
            input_channels=input_channels,
            channel_handling=handling,
            normalisation=DTYPE_RANGE,
        )
    assert "channels=" in str(info.value)


def test_inconsistent_card_is_reported() -> None:
    with pytest.raises(CellsegError, match="inconsistent"):
        to_model_input(
            np.zeros((4, 5), np.uint8),
            input_channels=2,
            channel_handling="rgb",
            normalisation=DTYPE_RANGE,
        )


# --- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 255), (np.uint16, 65535)])
def test_dtype_range_integers(dtype: type, top: int) -> None:
    x = np.array([[[0, top // 2, top]]], dtype)
    out = normalise(x, DTYPE_RANGE)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, (top // 2) / top, 1.0], rtol=1e-6)


def test_dtype_range_float_unchanged_and_custom_max() -> None:
    x = np.array([[[0.0, 0.5, 3.0]]], np.float64)
    np.testing.assert_array_equal(normalise(x, DTYPE_RANGE).ravel(), [0.0, 0.5, 3.0])
    twelve_bit = np.array([[[0, 4095]]], np.uint16)
    out = normalise(twelve_bit, {"method": "dtype-range", "max": 4095})
    np.testing.assert_array_equal(out.ravel(), [0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentile_maps_percentiles_to_0_and_1(dtype: type) -> None:
    values = np.arange(101, dtype=np.float64) * (2.0 if dtype != np.float32 else 0.01)
    x = values.astype(dtype).reshape(1, 1, 101)
    out = normalise(x, {"method": "percentile", "low": 1.0, "high": 99.0})
    assert out.dtype == np.float32
    assert out[0, 0, 1] == pytest.approx(0.0, abs=1e-5)
    assert out[0, 0, 99] == pytest.approx(1.0, abs=1e-5)
    assert out[0, 0, 50] == pytest.approx(49 / 98, abs=1e-5)
    assert out.min() == 0.0  # clipped by default
    assert out.max() == 1.0
    unclipped = normalise(x, {"method": "percentile", "low": 1.0, "high": 99.0, "clip": False})
    assert unclipped[0, 0, 0] < 0.0
    assert unclipped[0, 0, 100] > 1.0


def test_percentile_is_per_channel_and_flat_gives_zeros() -> None:
    x = np.stack([np.full((4, 5), 7.0), np.arange(20.0).reshape(4, 5) * 100])
    out = normalise(x, {"method": "percentile", "low": 0.0, "high": 100.0})
    np.testing.assert_array_equal(out[0], 0.0)
    assert out[1].min() == 0.0
    assert out[1].max() == 1.0


def test_percentile_on_large_plane_uses_subsample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(percentile, "PERCENTILE_SAMPLE_PIXELS", 100)
    rng = np.random.default_rng(1)
    x = rng.normal(1000, 100, (1, 200, 200)).astype(np.float32)
    seen: list[int] = []
    original = np.percentile

    def spy(a: np.ndarray, q: object) -> np.ndarray:
        seen.append(np.asarray(a).size)
        return original(a, q)

    monkeypatch.setattr(normalise_module.np, "percentile", spy)
    out = normalise(x, {"method": "percentile", "low": 1.0, "high": 99.0, "clip": False})
    assert seen and seen[0] <= 100
    monkeypatch.undo()
    exact = normalise(x, {"method": "percentile", "low": 1.0, "high": 99.0, "clip": False})
    assert np.abs(out - exact).max() < 0.2  # close to the full-plane result


def test_minmax() -> None:
    x = np.array([[[10, 20, 30]], [[5, 5, 5]]], np.uint16)
    out = normalise(x, {"method": "minmax"})
    np.testing.assert_allclose(out[0].ravel(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(out[1], 0.0)


def test_imagenet_defaults_and_custom() -> None:
    x = np.full((3, 2, 2), 255, np.uint8)
    out = normalise(x, {"method": "imagenet"})
    # torchvision's published ImageNet statistics, written out (not read from the module tested)
    imagenet_mean, imagenet_std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (1.0 - imagenet_mean) / imagenet_std
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-5)
    custom = normalise(x, {"method": "imagenet", "mean": 0.5, "std": 0.25})
    np.testing.assert_allclose(custom, 2.0)
    grey = normalise(x[:1], {"method": "imagenet"})
    mean, std = imagenet_mean.mean(), imagenet_std.mean()
    np.testing.assert_allclose(grey, (1.0 - mean) / std, rtol=1e-5)
    with pytest.raises(CellsegError, match="mean has 3 values but the model takes 2"):
        normalise(x[:2], {"method": "imagenet", "mean": [0.1, 0.2, 0.3]})


def test_none_only_casts_and_copies() -> None:
    x = np.array([[[1, 2]]], np.int16)
    out = normalise(x, {"method": "none"})
    assert out.dtype == np.float32
    out[...] = 0
    assert x.ravel().tolist() == [1, 2]


@pytest.mark.parametrize(
    ("normalisation", "needle"),
    [
        ({"method": "zscore"}, "unknown normalisation 'zscore'"),
        ({}, "unknown normalisation None"),
        ({"method": "percentile", "low": 90, "high": 10}, "low < high"),
    ],
)
def test_bad_normalisation(normalisation: dict[str, object], needle: str) -> None:
    with pytest.raises(CellsegError, match=needle):
        normalise(np.zeros((1, 4, 4), np.uint8), normalisation)


def test_to_model_input_does_not_modify_the_image() -> None:
    image = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    before = image.copy()
    for _, plane in iter_planes(image, "ZYX"):
        x = to_model_input(
            plane,
            input_channels=1,
            channel_handling="grey",
            normalisation={"method": "percentile", "low": 1.0, "high": 99.8},
        )
        assert x.shape == (1, 16, 16)
        assert 0.0 <= x.min() <= x.max() <= 1.0
    np.testing.assert_array_equal(image, before)


def test_channels_read_as_a_deep_stack_of_thin_planes_are_refused() -> None:
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.inference.preprocess import check_image

    with pytest.raises(CellsegError, match=r"256 planes of 256 x 5 pixels.*--axes YXC"):
        check_image(np.zeros((256, 256, 5), np.uint8))  # YXC saved as 256 pages of 256 x 5
    check_image(np.zeros((256, 256, 5), np.uint8), axes="YXC")  # the axes given: fine
    check_image(np.zeros((3, 64, 8), np.uint8))  # a short stack of narrow planes: fine
    check_image(np.zeros((64, 1500), np.uint8))  # a thin plane alone: fine


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).integers(0, 256, (3, 40, 50), dtype=np.uint8),
        np.repeat(np.random.default_rng(1).integers(0, 4096, (1, 33, 21), np.uint16), 3, 0),
        np.random.default_rng(2).normal(100.0, 20.0, (2, 30, 30)),
        np.stack([np.full((8, 8), 7, np.uint8), np.arange(64, dtype=np.uint8).reshape(8, 8)]),
    ],
    ids=["uint8 rgb", "uint16 grey as rgb", "float64", "a constant channel"],
)
@pytest.mark.parametrize("clip", [True, False])
def test_percentile_normalisation_equals_stretching_channel_by_channel(data, clip) -> None:
    """Written once into one array, the values are those of converting, stretching and
    stacking each channel (the pipeline before issue 21's memory work), bit for bit."""
    from napari_cellseg.models.normalise import normalise

    expected = []
    for c in data.astype(np.float32):
        lo, hi = (float(v) for v in np.percentile(c, (1.0, 99.8)))
        expected.append(
            ((c - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)
            if hi > lo
            else np.zeros(c.shape, np.float32)
        )
    expected = np.stack(expected)
    if clip:
        np.clip(expected, 0.0, 1.0, out=expected)
    got = normalise(data, {"method": "percentile", "low": 1.0, "high": 99.8, "clip": clip})
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
