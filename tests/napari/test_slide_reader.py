"""The slide reader contribution: pyramids and OME-Zarr as multiscale layers (no viewer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg._napari._slide_reader import get_slide_reader
from napari_cellseg.errors import ImageReadError
from napari_cellseg.io.ome_zarr import write_labels_zarr
from slide_files import rgb_tissue, write_ome_pyramid, write_ome_zarr

IMAGE = rgb_tissue(128, 192)


def test_a_pyramid_opens_as_a_multiscale_rgb_image(tmp_path) -> None:
    path = write_ome_pyramid(tmp_path / "a.ome.tif", IMAGE)
    ((levels, meta, kind),) = get_slide_reader(str(path))(str(path))
    assert kind == "image" and meta["multiscale"] and meta["rgb"] and meta["name"] == "a"
    assert [lv.shape[:2] for lv in levels] == [(128, 192), (64, 96), (32, 48)]
    assert meta["scale"] == (0.25, 0.25)
    from napari.layers import Image

    layer = Image(levels, **meta)  # napari accepts the metadata as it is
    assert layer.multiscale and layer.level_shapes[1].tolist() == [64, 96]


def test_ome_zarr_images_and_labels(tmp_path) -> None:
    store = write_ome_zarr(tmp_path / "z.ome.zarr", IMAGE)
    ((levels, meta, kind),) = get_slide_reader(str(store) + "/")(str(store))
    assert kind == "image" and meta["channel_axis"] == 2 and levels[0].shape == (128, 192, 3)
    labels = write_labels_zarr(tmp_path / "z_labels.ome.zarr", np.eye(1100, dtype=np.uint8), 1)
    ((levels, meta, kind),) = get_slide_reader([str(labels)])(str(labels))
    assert kind == "labels" and meta["multiscale"] and len(levels) == 3


def test_other_files_are_left_to_other_readers(tmp_path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "flat.ome.tif", IMAGE[..., 0])
    assert get_slide_reader(str(tmp_path / "flat.ome.tif")) is None
    assert get_slide_reader([str(tmp_path / "x.svs"), str(tmp_path / "y.svs")]) is None
    (tmp_path / "bad.svs").write_bytes(b"II*\x00junk")
    with pytest.raises(ImageReadError, match="bad.svs"):
        get_slide_reader(str(tmp_path / "bad.svs"))(str(tmp_path / "bad.svs"))


def test_labels_written_with_a_pixel_size_lie_over_their_slide(tmp_path) -> None:
    eye = np.eye(600, dtype=np.uint8)
    plain = write_labels_zarr(tmp_path / "a_labels.ome.zarr", eye, 1)
    ((_, meta, _),) = get_slide_reader(str(plain))(str(plain))
    assert "scale" not in meta  # no pixel size: pixels, as the slide without one
    sized = write_labels_zarr(tmp_path / "b_labels.ome.zarr", eye, 1, pixel_size_um=(0.5, 0.5))
    ((_, meta, _),) = get_slide_reader(str(sized))(str(sized))
    assert meta["scale"] == (0.5, 0.5) and meta["units"] == ("\u00b5m", "\u00b5m")
