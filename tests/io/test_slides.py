"""Whole-slide pyramids and OME-Zarr: levels, level choice, errors, OME-Zarr label output."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError, ImageReadError, ImageWriteError
from napari_cellseg.io.ome_zarr import is_labels_zarr, read_labels_zarr, write_labels_zarr
from napari_cellseg.io.slides import (
    SlideOptions,
    choose_level,
    is_slide,
    open_slide,
    parse_pixel_size,
    read_slide,
)
from slide_files import levels_of, rgb_tissue, write_ome_pyramid, write_ome_zarr, write_svs

IMAGE = rgb_tissue(256, 384)


def test_a_subifd_pyramid_opens_lazily_with_every_level(tmp_path) -> None:
    path = write_ome_pyramid(tmp_path / "a.ome.tif", IMAGE)
    assert is_slide(path)
    slide = open_slide(path)
    assert slide.axes == "YXS"
    assert [lv.shape for lv in slide.levels] == [lv.shape for lv in levels_of(IMAGE)]
    assert slide.pixel_sizes == [(0.25, 0.25), (0.5, 0.5), (1.0, 1.0)]
    assert type(slide.levels[1]).__name__ == "Array"  # dask: nothing decoded yet
    np.testing.assert_array_equal(
        np.asarray(slide.levels[1][10:70, 20:90]), IMAGE[::2, ::2][10:70, 20:90]
    )


def test_svs_metadata_gives_pixel_size_and_magnification(tmp_path) -> None:
    slide = open_slide(write_svs(tmp_path / "b.svs", IMAGE, mpp=0.5, mag=20))
    assert len(slide.levels) == 3 and slide.pixel_sizes[0] == (0.5, 0.5)
    assert slide.magnifications == pytest.approx([20, 10, 5])


def test_ome_zarr_levels_have_channels_last(tmp_path) -> None:
    slide = open_slide(write_ome_zarr(tmp_path / "c.ome.zarr", IMAGE))
    assert slide.axes == "YXC" and slide.levels[0].shape == IMAGE.shape
    assert slide.pixel_sizes[2] == (2.0, 2.0)
    np.testing.assert_array_equal(np.asarray(slide.levels[1]), IMAGE[::2, ::2])


@pytest.mark.parametrize(
    ("options", "level", "resample"),
    [
        (SlideOptions(), 0, 1.0),
        (SlideOptions(level=2), 2, 1.0),
        (SlideOptions(pixel_size_um=0.5), 1, 1.0),
        (SlideOptions(pixel_size_um=0.51), 1, 1.0),  # within 5 %
        (SlideOptions(pixel_size_um=0.8), 1, 0.625),  # next finer level, shrunk
        (SlideOptions(pixel_size_um=0.125), 0, 2.0),  # finer than level 0: enlarged
        (SlideOptions(magnification=10), 2, 1.0),  # no magnification recorded: 10 / 1 µm
        (SlideOptions(magnification=30), 0, 0.75),
    ],
)
def test_level_choice(tmp_path, options, level, resample) -> None:
    slide = open_slide(write_ome_pyramid(tmp_path / "a.ome.tif", IMAGE))
    choice = choose_level(slide, options)
    assert (choice.level, choice.resample) == (level, pytest.approx(resample))


def test_read_slide_gives_the_level_with_its_calibration(tmp_path) -> None:
    image, choice = read_slide(
        write_ome_pyramid(tmp_path / "a.ome.tif", IMAGE), SlideOptions(pixel_size_um=0.8)
    )
    assert image.pixel_size_um == (0.5, 0.5) and image.resample == pytest.approx(0.625)
    assert image.data.shape == IMAGE[::2, ::2].shape and "resampled" in choice.reason


def test_pixel_size_text() -> None:
    assert parse_pixel_size("0.5\u00b5m") == 0.5 and parse_pixel_size("0.25") == 0.25
    with pytest.raises(CellsegError, match="--pixel-size"):
        parse_pixel_size("half")


def test_bad_requests_and_files_say_what_is_wrong(tmp_path) -> None:
    path = write_ome_pyramid(tmp_path / "a.ome.tif", IMAGE)
    with pytest.raises(ImageReadError, match=r"a\.ome\.tif: has 3 pyramid levels \(0-2\); level 5"):
        read_slide(path, SlideOptions(level=5))
    bare = write_ome_pyramid(tmp_path / "bare.ome.tif", IMAGE, pixel_um=None)
    with pytest.raises(ImageReadError, match="no pixel size.*--level"):
        read_slide(bare, SlideOptions(pixel_size_um=0.5))
    with pytest.raises(CellsegError, match="only one of"):
        SlideOptions(level=1, magnification=20)
    (tmp_path / "m.mrxs").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="MIRAX.*convert"):
        open_slide(tmp_path / "m.mrxs")
    data = path.read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.svs: .*(truncated|damaged)") as info:
        open_slide(cut)
    assert "\n" not in str(info.value)


def test_a_damaged_zarr_store_names_the_missing_level(tmp_path) -> None:
    import shutil

    store = write_ome_zarr(tmp_path / "d.ome.zarr", IMAGE)
    shutil.rmtree(store / "1")
    with pytest.raises(ImageReadError, match=r"d\.ome\.zarr: level '1'.*missing"):
        open_slide(store)
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(ImageReadError, match="plain.zarr"):
        open_slide(tmp_path / "plain.zarr")


def test_labels_written_as_a_chunked_ome_zarr_pyramid(tmp_path) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 70000, (1300, 700)).astype(np.uint32)
    out = write_labels_zarr(tmp_path / "a_labels.ome.zarr", labels, None, "YX", (0.5, 0.5))
    levels = read_labels_zarr(out)
    assert is_labels_zarr(out) and [lv.shape for lv in levels] == [
        (1300, 700),
        (650, 350),
        (325, 175),
    ]
    assert levels[0].chunks == (1024, 1024) and levels[0].dtype == np.uint32
    np.testing.assert_array_equal(levels[0][:], labels)
    np.testing.assert_array_equal(levels[1][:], labels[::2, ::2])
    assert open_slide(out).pixel_sizes == [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0)]
    small = write_labels_zarr(out, labels[:20, :20] % 5, 4)  # replaces the old store
    assert read_labels_zarr(small)[0].dtype == np.uint16 and read_labels_zarr(small)[0].shape == (
        20,
        20,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_labels.ome.zarr"]  # no temporary left


def test_zarr_label_errors_leave_nothing(tmp_path) -> None:
    with pytest.raises(ImageWriteError, match="ending in .zarr"):
        write_labels_zarr(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), 0)
    with pytest.raises(ImageWriteError, match="folder does not exist"):
        write_labels_zarr(tmp_path / "no" / "a.zarr", np.zeros((4, 4), np.uint8), 0)
    assert list(tmp_path.iterdir()) == []
