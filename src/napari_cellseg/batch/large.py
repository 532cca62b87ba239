"""Large images in a batch: block-by-block segmentation into an on-disk label array.

Planes larger than ``BatchJob.blocks.block_pixels`` are segmented with
:func:`~napari_cellseg.inference.blocks.iter_predict_blocks`. The labels go into a zarr
array in a hidden scratch folder beside the output (``.<name>.<random>.tmp``, removed
afterwards, and by the next run if this one was killed); the label TIFF is then written
tile by tile from it, atomically. Measurements are taken block by block while each block's
pixels are in memory. Host memory depends on the block size, not on the image size.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import ImageWriteError
from napari_cellseg.events import Notice, Progress
from napari_cellseg.inference.blocks import is_large_plane
from napari_cellseg.inference.preprocess import label_axes, label_shape, resolve_axes
from napari_cellseg.io.images import ImageData
from napari_cellseg.params import BlockOptions

__all__ = [
    "is_large",
    "remove_scratch",
    "segment_large",
    "write_label_output",
    "write_labels_tiled",
]

LABEL_TILE = 512
_CHUNK = 1024


def is_large(image: ImageData, blocks: BlockOptions) -> bool:
    """Whether ``image`` goes block by block: a plane of more than ``blocks.block_pixels``
    pixels, or a lazily read one (a slide level, a compressed TIFF, OME-Zarr)."""
    if not isinstance(image.data, np.ndarray):
        return True
    axes = resolve_axes(image.data.shape, image.axes)
    return is_large_plane(image.data.shape, axes, blocks.block_pixels)


def scratch_folder(labels_path: str | Path) -> Path:
    """A fresh hidden folder beside ``labels_path``, named like an atomic temporary file."""
    target = Path(labels_path)
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


def remove_scratch(prediction: Any) -> None:
    """Delete the scratch folder of a block-by-block prediction (no-op for others)."""
    folder = getattr(prediction, "scratch", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def segment_large(
    image: ImageData,
    model: Any,
    params: Any,
    labels_path: str | Path,
    *,
    measure: bool,
    blocks: BlockOptions,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress | Notice, None, Any]:
    """Segment a large image block by block; the prediction's labels are a zarr array.

    The returned prediction has a ``scratch`` attribute (its folder); pass the prediction
    to :func:`remove_scratch` once its labels are written. On any error the folder is
    removed before the error propagates.
    """
    import zarr

    from napari_cellseg.batch.measure import add_physical_columns, measure_labels
    from napari_cellseg.inference.blocks import iter_predict_blocks
    from napari_cellseg.inference.diameter import iter_choose_scale

    axes = resolve_axes(image.data.shape, params.axes or image.axes)
    shape = label_shape(image.data.shape, axes)
    folder = scratch_folder(labels_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        chunks = (1,) * (len(shape) - 2) + (_CHUNK, _CHUNK)
        store = zarr.open_array(
            str(folder / "labels.zarr"), mode="w", shape=shape, chunks=chunks, dtype="uint32"
        )

        def measure_block(labels: np.ndarray, crop: np.ndarray, plane_axes: str) -> dict:
            return measure_labels(labels, crop, plane_axes)

        run_params = params if params.axes else _with_axes(params, axes)
        diameter, size_scale = yield from iter_choose_scale(
            image.data,
            model,
            run_params,
            pixel_size_um=image.pixel_size_um,
            should_stop=should_stop,
        )
        scale = size_scale * image.resample  # a slide level resampled to the asked pixels
        prediction = yield from iter_predict_blocks(
            image.data,
            model,
            store,
            run_params,
            blocks=blocks,
            measure=measure_block if measure else None,
            should_stop=should_stop,
            scale=scale,
        )
        prediction.diameter = diameter
        if prediction.measurements is not None:
            add_physical_columns(prediction.measurements, image.pixel_size_um)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    prediction.scratch = folder
    return prediction


def _with_axes(params: Any, axes: str) -> Any:
    from dataclasses import replace

    return replace(params, axes=axes)


def _tiles(store: Any, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Row-major ``LABEL_TILE`` tiles of every plane, zero-padded at the edges."""
    height, width = store.shape[-2:]
    for index in np.ndindex(*store.shape[:-2]):
        for y in range(0, height, LABEL_TILE):
            strip = np.asarray(store[(*index, slice(y, y + LABEL_TILE), slice(None))])
            for x in range(0, width, LABEL_TILE):
                tile = np.zeros((LABEL_TILE, LABEL_TILE), dtype)
                part = strip[:, x : x + LABEL_TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile


def write_labels_tiled(
    path: str | Path,
    store: Any,
    n_objects: int,
    axes: str,
    pixel_size_um: tuple[float, float] | None = None,
) -> Path:
    """Write a label array (zarr or numpy) as a tiled, zlib-compressed TIFF, atomically.

    Only one row of tiles is in memory at a time. The type is uint16 when ``n_objects``
    fits, else uint32 (as :func:`napari_cellseg.io.images.write_labels` chooses).
    """
    import tifffile

    from napari_cellseg.io.atomic import atomic_write
    from napari_cellseg.io.files import label_dtype, write_problem

    p = Path(path)
    dtype = label_dtype(n_objects)
    resolution = None
    if pixel_size_um is not None:
        sy, sx = (float(v) for v in pixel_size_um)
        resolution = (1e4 / sx, 1e4 / sy)
    try:
        with atomic_write(p, "wb") as fh:
            tifffile.imwrite(
                fh,
                _tiles(store, dtype),
                shape=tuple(store.shape),
                dtype=dtype,
                tile=(LABEL_TILE, LABEL_TILE),
                photometric="minisblack",
                compression="zlib",
                resolution=resolution,
                resolutionunit=tifffile.RESUNIT.CENTIMETER if resolution else None,
                metadata={"axes": label_axes(axes)},
            )
    except OSError as exc:
        raise ImageWriteError(p, write_problem(exc)) from exc
    return p


def write_label_output(
    path: str | Path,
    labels: Any,
    n_objects: int,
    axes: str,
    pixel_size_um: tuple[float, float] | None = None,
) -> Path:
    """Labels of a block-by-block run: OME-Zarr for a ``.zarr`` name, else a tiled TIFF."""
    if str(path).lower().endswith(".zarr"):
        from napari_cellseg.io.ome_zarr import write_labels_zarr

        return write_labels_zarr(path, labels, n_objects, label_axes(axes), pixel_size_um)
    return write_labels_tiled(path, labels, n_objects, axes, pixel_size_um)


def labels_readable(path: str | Path, shape: list[int] | None) -> bool:
    """Whether a (possibly huge) label TIFF or OME-Zarr has ``shape``, unsigned pixels
    and decodes fully.

    Decodes strip by strip through tifffile's zarr interface, so memory stays small.
    """
    import tifffile
    import zarr

    if str(path).lower().endswith(".zarr"):
        return _zarr_readable(path, shape)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if series.dtype.kind != "u" or shape is None or list(series.shape) != list(shape):
                return False
            with contextlib.closing(series.aszarr()) as zstore:
                array = zarr.open_array(zstore, mode="r")
                step = max(1, (1 << 24) // max(1, int(np.prod(array.shape[1:]))))
                for start in range(0, array.shape[0], step):
                    array[start : start + step]
    except Exception:
        return False
    return True


def _zarr_readable(path: str | Path, shape: list[int] | None) -> bool:
    """:func:`labels_readable` for an OME-Zarr label image (every chunk of level 0)."""
    from napari_cellseg.io.ome_zarr import CHUNK, read_labels_zarr

    try:
        array = read_labels_zarr(path)[0]
        if array.dtype.kind != "u" or shape is None or list(array.shape) != list(shape):
            return False
        for index in np.ndindex(*array.shape[:-2]):
            for y in range(0, array.shape[-2], CHUNK):
                array[(*index, slice(y, y + CHUNK))]
    except Exception:
        return False
    return True
