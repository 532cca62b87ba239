"""OME-Zarr: label images written chunk by chunk with a label pyramid; images opened lazily.

:func:`write_labels_zarr` copies labels from any array-like (a numpy array, or the on-disk
zarr array block-by-block segmentation wrote) into ``<name>.ome.zarr`` one chunk at a time,
adds 2x-downsampled levels (nearest neighbour, so ids stay ids) and the ``multiscales`` and
``image-label`` metadata, all in a hidden temporary folder that is renamed onto the target
when complete. napari (this plugin's reader, napari-ome-zarr), QuPath and ome-zarr-py read it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import ImageReadError, ImageWriteError
from napari_cellseg.io.files import check_destination, label_dtype, write_problem

__all__ = [
    "CHUNK",
    "is_labels_zarr",
    "open_image_zarr",
    "read_labels_zarr",
    "replace_folder",
    "write_labels_zarr",
]

CHUNK = 1024
#: Downsampled levels are added until the largest edge is at most this.
SMALLEST_LEVEL = 512
NGFF_VERSION = "0.4"
_UNITS_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4}


def _axes_metadata(axes: str, pixel: bool) -> list[dict[str, str]]:
    out = []
    for a in axes.lower():
        entry = {"name": a, "type": "time" if a == "t" else "space"}
        if pixel and a in "yx":
            entry["unit"] = "micrometer"
        out.append(entry)
    return out


def _level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Level 0's shape and each 2x-smaller level's, until the plane fits ``SMALLEST_LEVEL``.

    >>> _level_shapes((1500, 700))
    [(1500, 700), (750, 350), (375, 175)]
    """
    shapes = [tuple(shape)]
    while max(shapes[-1][-2:]) > SMALLEST_LEVEL:
        *lead, h, w = shapes[-1]
        shapes.append((*lead, (h + 1) // 2, (w + 1) // 2))
    return shapes


def _copy_chunks(source: Any, target: Any, step: int, dtype: np.dtype) -> None:
    """``target = source[..., ::step, ::step]`` one target chunk at a time."""
    height, width = target.shape[-2:]
    for index in np.ndindex(*target.shape[:-2]):
        for y in range(0, height, CHUNK):
            for x in range(0, width, CHUNK):
                region = (
                    slice(y * step, (y + CHUNK) * step, step),
                    slice(x * step, (x + CHUNK) * step, step),
                )
                block = np.asarray(source[(*index, *region)]).astype(dtype, copy=False)
                target[(*index, slice(y, y + block.shape[0]), slice(x, x + block.shape[1]))] = block


def replace_folder(tmp: Path, target: Path) -> None:
    """Move a finished folder onto ``target`` (an older one is removed only afterwards)."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def write_labels_zarr(
    path: str | os.PathLike[str],
    labels: Any,
    n_objects: int | None = None,
    axes: str | None = None,
    pixel_size_um: tuple[float, float] | None = None,
) -> Path:
    """Write labels as an OME-Zarr label image, chunk by chunk, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination folder, ending in ``.zarr`` (``<stem>_labels.ome.zarr``).
    labels : array-like
        2-D labels or a stack with leading T/Z axes (numpy or zarr); read one chunk at a time.
    n_objects : int, optional
        The largest label (uint16 when it fits, else uint32); read from ``labels`` if omitted.
    axes : str, optional
        Axis letters (``"YX"``, ``"ZYX"``, ``"TYX"``...); by the number of dimensions if omitted.
    pixel_size_um : (float, float), optional
        Level 0's pixel size, stored as the scale of each level.

    Returns
    -------
    pathlib.Path
        The written folder.

    Raises
    ------
    ImageWriteError
        A name not ending in ``.zarr``, labels of a wrong shape, a missing folder, a full
        disk. No partial store is left behind.
    """
    import zarr

    p = Path(path)
    shape = tuple(int(s) for s in labels.shape)
    axes = (axes or ("YX", "ZYX", "TZYX")[len(shape) - 2]).upper()
    if not p.name.lower().endswith(".zarr"):
        raise ImageWriteError(
            p, "OME-Zarr labels need a name ending in .zarr (e.g. a_labels.ome.zarr)"
        )
    if len(shape) != len(axes) or len(shape) < 2 or 0 in shape or not axes.endswith("YX"):
        raise ImageWriteError(p, f"labels of shape {shape} do not fit axes {axes!r}")
    check_destination(p)
    if n_objects is None:
        n_objects = int(np.max(labels)) if isinstance(labels, np.ndarray) else _max(labels)
    dtype = label_dtype(n_objects)
    tmp = p.parent / f".{p.name}.{secrets.token_hex(4)}.tmp"
    scale_yx = pixel_size_um or (1.0, 1.0)
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        datasets = []
        source = labels
        for level, level_shape in enumerate(_level_shapes(shape)):
            chunks = (1,) * (len(shape) - 2) + (CHUNK, CHUNK)
            array = group.create_array(
                str(level), shape=level_shape, chunks=chunks, dtype=dtype, fill_value=0,
                chunk_key_encoding={"name": "v2", "separator": "/"},
            )  # fmt: skip
            _copy_chunks(source, array, 1 if level == 0 else 2, dtype)
            source = array
            factor = 2.0**level
            scale = [1.0] * (len(shape) - 2) + [scale_yx[0] * factor, scale_yx[1] * factor]
            datasets.append(
                {
                    "path": str(level),
                    "coordinateTransformations": [{"type": "scale", "scale": scale}],
                }
            )
        group.attrs.update(
            {
                "multiscales": [
                    {
                        "version": NGFF_VERSION,
                        "name": p.name.removesuffix(".zarr").removesuffix(".ome"),
                        "axes": _axes_metadata(axes, pixel_size_um is not None),
                        "datasets": datasets,
                        "type": "nearest",
                    }
                ],
                "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
            }
        )
        replace_folder(tmp, p)
    except OSError as error:
        raise ImageWriteError(p, write_problem(error)) from error
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                shutil.rmtree(tmp)
    return p


def _max(labels: Any) -> int:
    """The largest label of a lazy array, chunk by chunk."""
    best = 0
    height = labels.shape[-2]
    for index in np.ndindex(*labels.shape[:-2]):
        for y in range(0, height, CHUNK):
            best = max(
                best, int(np.max(np.asarray(labels[(*index, slice(y, y + CHUNK))]), initial=0))
            )
    return best


def is_labels_zarr(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an OME-Zarr label image (``image-label`` metadata)."""
    attrs_file = Path(path) / ".zattrs"
    try:
        import json

        return "image-label" in json.loads(attrs_file.read_text())
    except (OSError, ValueError):
        return False


def read_labels_zarr(path: str | os.PathLike[str]) -> list[Any]:
    """The levels of an OME-Zarr label image, lazily (zarr arrays), largest first."""
    import zarr

    p = Path(path)
    try:
        group = zarr.open_group(str(p), mode="r")
        datasets = group.attrs["multiscales"][0]["datasets"]
        return [group[d["path"]] for d in datasets]
    except Exception as error:
        raise ImageReadError(
            p, f"not a readable OME-Zarr label image ({type(error).__name__}: {error})"
        ) from error


def _multiscales(group: Any) -> dict[str, Any] | None:
    attrs = dict(group.attrs)
    attrs = attrs.get("ome", attrs)  # NGFF 0.5 keeps it under "ome"
    multiscales = attrs.get("multiscales")
    return multiscales[0] if multiscales else None


def open_image_zarr(
    path: str | os.PathLike[str],
) -> tuple[list[Any], str, list[tuple[float, float] | None]]:
    """An OME-Zarr image's levels (zarr arrays, largest first), axes (``TCZYX`` letters) and
    per-level pixel sizes (µm; None without a micrometre-convertible unit).

    A bare zarr array is one level (``YX``, ``YXS`` for 3 or 4 samples last, else ``CYX``…).

    Raises
    ------
    ImageReadError
        Not a Zarr store, no multiscales metadata, odd axes, a level named but missing.
    """
    import zarr

    p = Path(path)
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as error:
        raise ImageReadError(
            p, f"not a readable Zarr store ({type(error).__name__}: {error}); copy it again"
        ) from error
    if isinstance(node, zarr.Array):
        if node.ndim == 3 and node.shape[-1] in (3, 4):
            return [node], "YXS", [None]
        return [node], "TCZYX"[-node.ndim :] if node.ndim > 2 else "YX", [None]
    meta = _multiscales(node)
    if meta is None:
        raise ImageReadError(p, "a Zarr group without OME-Zarr multiscales metadata: not an image")
    names = [a["name"] if isinstance(a, dict) else a for a in meta.get("axes", "cyx")]
    axes = "".join(str(n).upper() for n in names)
    if set(axes) - set("TCZYX") or "Y" not in axes or "X" not in axes:
        raise ImageReadError(p, f"OME-Zarr axes {names} are not t, c, z, y, x")
    units = [a.get("unit") if isinstance(a, dict) else None for a in meta.get("axes", [])]
    arrays, sizes = [], []
    for dataset in meta["datasets"]:
        try:
            arrays.append(node[dataset["path"]])
        except KeyError:
            raise ImageReadError(
                p, f"level {dataset['path']!r} named in its metadata is missing: damaged store"
            ) from None
        sizes.append(_scale_um(dataset, axes, units))
    return arrays, axes, sizes


def _scale_um(dataset: dict[str, Any], axes: str, units: list[Any]) -> tuple[float, float] | None:
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == len(axes):
            iy, ix = axes.index("Y"), axes.index("X")
            factor = _UNITS_UM.get(str(units[iy]).lower()) if len(units) == len(axes) else None
            if factor is None:
                return None
            return float(transform["scale"][iy]) * factor, float(transform["scale"][ix]) * factor
    return None
