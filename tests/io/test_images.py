"""Reading images and labels, writing labels atomically, and the clear errors for bad files."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_cellseg.errors import ImageReadError, ImageWriteError
from napari_cellseg.io import atomic
from napari_cellseg.io import images as cio
from napari_cellseg.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from napari_cellseg.io.images import (
    SUPPORTED_IMAGE_SUFFIXES,
    ImageData,
    read_image,
    read_labels,
    write_labels,
)

REPO = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(42)


def _grey(shape: tuple[int, ...] = (32, 48), dtype: type = np.uint8) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(0, info.max, shape, dtype=dtype, endpoint=True)


def _names(path: Path) -> str:
    """A regex matching the file's path in an error message."""
    return re.escape(str(path))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- good images


def test_grey_png(tmp_path: Path) -> None:
    img = _grey()
    path = tmp_path / "grey.png"
    iio.imwrite(path, img)
    out = read_image(path)
    assert isinstance(out, ImageData)
    assert out.axes == "YX"
    assert out.path == path
    assert out.pixel_size_um is None
    assert out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.data, img)


def test_rgb_png(tmp_path: Path) -> None:
    img = _grey((20, 30, 3))
    path = tmp_path / "rgb.PNG"
    iio.imwrite(path, img, extension=".png")
    out = read_image(path)
    assert out.axes == "YXS"
    np.testing.assert_array_equal(out.data, img)


def test_grey_rgba_png_stays_as_read(tmp_path: Path) -> None:
    grey = _grey((20, 30))
    img = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    path = tmp_path / "rgba.png"
    iio.imwrite(path, img)
    out = read_image(path)
    assert out.axes == "YXS"
    assert out.data.shape == (20, 30, 4)
    np.testing.assert_array_equal(out.data, img)


def test_16bit_png(tmp_path: Path) -> None:
    img = _grey((16, 16), np.uint16)
    path = tmp_path / "deep.png"
    iio.imwrite(path, img)
    out = read_image(path)
    assert out.axes == "YX"
    np.testing.assert_array_equal(out.data.astype(np.uint16), img)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_jpeg(tmp_path: Path, suffix: str) -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (200, 100, 50)
    path = tmp_path / f"photo{suffix}"
    iio.imwrite(path, img, quality=95)
    out = read_image(path)
    assert out.axes == "YXS"
    assert out.data.shape == img.shape
    assert np.abs(out.data.astype(int) - img).mean() < 5


def test_grey_jpeg_and_bmp(tmp_path: Path) -> None:
    img = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    iio.imwrite(tmp_path / "g.jpg", img)
    iio.imwrite(tmp_path / "g.bmp", img)
    assert read_image(tmp_path / "g.jpg").axes == "YX"
    bmp = read_image(tmp_path / "g.bmp")
    assert bmp.axes == "YX"
    np.testing.assert_array_equal(bmp.data, img)


def test_16bit_tiff(tmp_path: Path) -> None:
    img = _grey((40, 50), np.uint16)
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, img)
    out = read_image(path)
    assert out.axes == "YX"
    assert out.data.dtype == np.uint16
    assert out.pixel_size_um is None
    np.testing.assert_array_equal(out.data, img)


def test_float32_tiff(tmp_path: Path) -> None:
    img = RNG.random((24, 24), dtype=np.float32) * 1000 - 10
    path = tmp_path / "float.tiff"
    tifffile.imwrite(path, img)
    out = read_image(path)
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, img)


def test_rgb_tiff(tmp_path: Path) -> None:
    img = _grey((20, 22, 3))
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, img, photometric="rgb")
    out = read_image(path)
    assert out.axes == "YXS"
    np.testing.assert_array_equal(out.data, img)


def test_planar_rgb_tiff_has_samples_last(tmp_path: Path) -> None:
    img = _grey((3, 10, 12))
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, img, photometric="rgb", planarconfig="separate")
    out = read_image(path)
    assert out.axes == "YXS"
    np.testing.assert_array_equal(out.data, np.moveaxis(img, 0, -1))


def test_multipage_stack(tmp_path: Path) -> None:
    stack = _grey((5, 16, 20), np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    out = read_image(path)
    assert out.axes == "ZYX"
    np.testing.assert_array_equal(out.data, stack)


def test_multipage_without_shape_metadata(tmp_path: Path) -> None:
    stack = _grey((3, 8, 8))
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for page in stack:
            tif.write(page, metadata=None)
    out = read_image(path)
    assert out.axes == "ZYX"  # tifffile calls the page axis 'I'
    np.testing.assert_array_equal(out.data, stack)


def test_ome_tiff_tcyx_with_pixel_size(tmp_path: Path) -> None:
    data = _grey((2, 3, 16, 18), np.uint16)
    path = tmp_path / "movie.ome.tif"
    meta = {"axes": "TCYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.5}
    tifffile.imwrite(path, data, metadata=meta)
    out = read_image(path)
    assert out.axes == "TCYX"
    assert out.data.shape == data.shape
    assert out.pixel_size_um == pytest.approx((0.5, 0.325))
    np.testing.assert_array_equal(out.data, data)


def test_ome_tiff_zcyx_in_nanometres(tmp_path: Path) -> None:
    data = _grey((4, 2, 8, 8), np.uint16)
    path = tmp_path / "volume.ome.tiff"
    meta = {
        "axes": "ZCYX",
        "PhysicalSizeX": 650.0,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 650.0,
        "PhysicalSizeYUnit": "nm",
    }
    tifffile.imwrite(path, data, metadata=meta)
    out = read_image(path)
    assert out.axes == "ZCYX"
    assert out.pixel_size_um == pytest.approx((0.65, 0.65))


def test_imagej_tiff_with_resolution(tmp_path: Path) -> None:
    data = _grey((4, 16, 16), np.uint16)
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.25),  # x, y in pixels per unit
        metadata={"unit": "micron", "axes": "ZYX"},
    )
    out = read_image(path)
    assert out.axes == "ZYX"
    assert out.pixel_size_um == pytest.approx((0.25, 0.2))


def test_tiff_resolution_in_cm_and_default_dpi(tmp_path: Path) -> None:
    img = _grey((8, 8))
    cm = tmp_path / "cm.tif"
    tifffile.imwrite(cm, img, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    assert read_image(cm).pixel_size_um == pytest.approx((0.5, 0.5))
    dpi = tmp_path / "dpi.tif"
    tifffile.imwrite(dpi, img, resolution=(72, 72), resolutionunit="INCH")
    assert read_image(dpi).pixel_size_um is None  # an editor's default, not a calibration


def test_real_sample_image() -> None:
    path = REPO / "sample_data" / "images" / "dsb_fluorescence.png"
    out = read_image(path)
    assert out.axes == "YXS"
    assert out.data.shape == (256, 256, 4)
    assert out.data.dtype == np.uint8
    labels = read_labels(REPO / "sample_data" / "masks" / "dsb_fluorescence.tif")
    assert labels.shape == (256, 256)
    assert labels.dtype == np.uint16
    assert labels.max() == len(np.unique(labels)) - 1 > 10


# --------------------------------------------------------------------------- bad images


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.tif"
    with pytest.raises(ImageReadError, match=_names(path) + ".*not found"):
        read_image(path)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.tif"
    path.mkdir()
    with pytest.raises(ImageReadError, match=_names(path) + ".*folder"):
        read_image(path)


@pytest.mark.parametrize("name", ["empty.tif", "empty.png", "empty.jpg"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.touch()
    with pytest.raises(ImageReadError, match=_names(path) + ".*empty"):
        read_image(path)


@pytest.mark.parametrize("name", ["notes.gif", "notes.txt", "README"])
def test_unsupported_extension_lists_supported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("hello")
    with pytest.raises(ImageReadError, match=_names(path) + ".*unsupported") as info:
        read_image(path)
    for suffix in SUPPORTED_IMAGE_SUFFIXES:
        assert suffix in str(info.value)


@pytest.mark.parametrize("name", ["text.tif", "text.png", "text.jpg", "text.bmp"])
def test_text_named_as_image(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(ImageReadError, match=_names(path) + ".*(not a valid TIFF|not an image)"):
        read_image(path)


def _truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_stack(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _grey((5, 64, 64), np.uint16), compression=compression)
    _truncate(path)
    with pytest.raises(ImageReadError, match=_names(path) + ".*truncated"):
        read_image(path)


def test_truncated_single_page_tiff(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _grey((64, 64), np.uint16))
    _truncate(path, 0.6)
    with pytest.raises(ImageReadError, match=_names(path) + ".*truncated"):
        read_image(path)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_png_jpeg(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    iio.imwrite(path, _grey((64, 64, 3)))
    _truncate(path)
    with pytest.raises(ImageReadError, match=_names(path) + ".*truncated"):
        read_image(path)


def test_zero_size_dimension(tmp_path: Path) -> None:
    path = tmp_path / "nothing.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(path, np.zeros((0, 16), np.uint8))
    with pytest.raises(ImageReadError, match=_names(path) + ".*empty dimension"):
        read_image(path)


def test_more_than_five_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "six.tif"
    tifffile.imwrite(path, np.zeros((2, 2, 2, 2, 8, 8), np.uint8))
    with pytest.raises(ImageReadError, match=_names(path) + ".*6 dimensions"):
        read_image(path)


# --------------------------------------------------------------------------- labels


def test_labels_round_trip_uint16(tmp_path: Path) -> None:
    labels = np.zeros((30, 40), np.int64)
    labels[2:10, 3:9] = 1
    labels[15:25, 20:35] = 65535
    path = write_labels(tmp_path / "labels.tif", labels, pixel_size_um=(0.5, 0.25))
    assert path == tmp_path / "labels.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.pages[0].dtype == np.uint16
    out = read_labels(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)
    assert read_image(path).pixel_size_um == pytest.approx((0.5, 0.25))
    assert _leftovers(tmp_path) == []


def test_labels_round_trip_uint32(tmp_path: Path) -> None:
    labels = np.zeros((3, 20, 20), np.uint32)
    labels[1, 5:10, 5:10] = 70000
    labels[2, 0:4, 0:4] = 3
    path = write_labels(tmp_path / "big.tiff", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].dtype == np.uint32
        assert len(tif.pages) == 3  # a stack of grey pages, not one RGB page
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    out = read_labels(path)
    assert out.dtype == np.uint32
    assert out.shape == (3, 20, 20)
    np.testing.assert_array_equal(out, labels)


def test_write_labels_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.tif"
    write_labels(path, np.ones((4, 4), np.uint8))
    write_labels(path, np.full((4, 4), 7, np.uint8))
    assert read_labels(path).max() == 7
    assert _leftovers(tmp_path) == []


def test_read_labels_png_and_integral_float(tmp_path: Path) -> None:
    png = tmp_path / "labels.png"
    iio.imwrite(png, np.array([[0, 1], [2, 3]], np.uint8))
    assert read_labels(png).dtype == np.uint16
    flt = tmp_path / "float.tif"
    tifffile.imwrite(flt, np.array([[0, 1], [2, 70000]], np.float32))
    out = read_labels(flt)
    assert out.dtype == np.uint32
    assert out[1, 1] == 70000


def test_read_labels_grey_rgb_accepted(tmp_path: Path) -> None:
    grey = np.array([[0, 1], [2, 3]], np.uint8)
    path = tmp_path / "rgb_labels.png"
    iio.imwrite(path, np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(read_labels(path), grey)


@pytest.mark.parametrize(
    ("name", "array", "problem"),
    [
        ("frac.tif", np.array([[0, 1.5]], np.float32), "non-integer"),
        ("nan.tif", np.array([[0, np.nan]], np.float32), "non-integer"),
        ("neg.tif", np.array([[0, -1]], np.int16), "negative"),
        ("colour.png", np.array([[[1, 2, 3]]], np.uint8), "colour"),
        ("four.tif", np.zeros((2, 2, 3, 4), np.uint16), "2-D or a 3-D stack"),
    ],
)
def test_read_labels_rejects(tmp_path: Path, name: str, array: np.ndarray, problem: str) -> None:
    path = tmp_path / name
    if name.endswith(".png"):
        iio.imwrite(path, array)
    else:
        tifffile.imwrite(path, array, metadata={"axes": "TZYX"} if array.ndim == 4 else {})
    with pytest.raises(ImageReadError, match=_names(path) + f".*{problem}"):
        read_labels(path)


def test_read_labels_rejects_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "labels.jpg"
    iio.imwrite(path, np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageReadError, match=_names(path) + ".*unsupported.*\\.png"):
        read_labels(path)


@pytest.mark.parametrize(
    ("name", "array", "problem"),
    [
        ("f.tif", np.zeros((4, 4), np.float32), "integers"),
        ("n.tif", np.array([[0, -3]], np.int32), "negative"),
        ("one.tif", np.zeros(4, np.uint16), "2-D"),
        ("l.png", np.zeros((4, 4), np.uint16), r"\.tif"),
    ],
)
def test_write_labels_rejects(tmp_path: Path, name: str, array: np.ndarray, problem: str) -> None:
    path = tmp_path / name
    with pytest.raises(ImageWriteError, match=_names(path) + f".*{problem}"):
        write_labels(path, array)
    assert list(tmp_path.iterdir()) == []


def test_write_labels_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "labels.tif"
    with pytest.raises(ImageWriteError, match=_names(path) + ".*folder does not exist"):
        write_labels(path, np.zeros((4, 4), np.uint16))


# --------------------------------------------------------------------------- atomic writes


def test_atomic_helpers(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write_text(tmp_path / "a.txt", "héllo\n").read_text("utf-8") == "héllo\n"
    assert _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "ab"):
        pass


def test_atomic_write_exception_mid_write_leaves_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as fh:
        fh.write(b"new partial data")
        seen.extend(p for p in tmp_path.iterdir() if p.name.startswith(".out.bin."))
        raise RuntimeError("boom")
    assert len(seen) == 1 and seen[0].name.endswith(".tmp")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_new_file_gets_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError), atomic_write(tmp_path / "new.txt", "w") as fh:
        fh.write("partial")
        raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_enospc_becomes_image_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "labels.tif"
    write_labels(target, np.ones((4, 4), np.uint16))
    before = target.read_bytes()
    real_imwrite = tifffile.imwrite

    def full_disk(fh: object, data: np.ndarray, **kwargs: object) -> None:
        real_imwrite(fh, data, **kwargs)  # some bytes reach the temp file ...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then the disk is full

    monkeypatch.setattr(cio.tifffile, "imwrite", full_disk)
    with pytest.raises(ImageWriteError, match=_names(target) + ".*disk is full") as info:
        write_labels(target, np.full((64, 64), 2, np.uint16))
    assert isinstance(info.value.__cause__, OSError)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]


def test_enospc_on_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    target = tmp_path / "new.tif"
    with pytest.raises(ImageWriteError, match=_names(target) + ".*disk is full"):
        write_labels(target, np.ones((8, 8), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (running as root?)")
        target = folder / "labels.tif"
        with pytest.raises(ImageWriteError, match=_names(target) + ".*permission denied"):
            write_labels(target, np.ones((4, 4), np.uint16))
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_read_only_folder_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same path as a real read-only folder, for runs as root: mkstemp fails with EACCES."""

    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    target = tmp_path / "labels.tif"
    with pytest.raises(ImageWriteError, match=_names(target) + ".*permission denied"):
        write_labels(target, np.ones((4, 4), np.uint16))
    assert list(tmp_path.iterdir()) == []
