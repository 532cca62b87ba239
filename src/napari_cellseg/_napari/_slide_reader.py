"""napari reader contribution for whole slides and OME-Zarr: every level, as a multiscale layer.

npe2 reader signature, no napari or Qt import (tested without a viewer). Slides (SVS,
NDPI, SCN, pyramidal OME-TIFF) and OME-Zarr images open as one multiscale image layer whose
levels are lazy dask arrays (napari reads only the tiles on screen); OME-Zarr label images
(``*_labels.ome.zarr``, written by ``cellseg predict --labels-format zarr``) open as a
multiscale labels layer. Anything else (a TIFF without a pyramid) is left to other readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_cellseg.io.ome_zarr import is_labels_zarr, open_image_zarr, read_labels_zarr
from napari_cellseg.io.slides import describe, is_slide, open_slide

__all__ = ["get_slide_reader", "read_slide_layers"]

LayerData = list[tuple[Any, dict[str, Any], str]]


def get_slide_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """The reader for a slide, a pyramidal TIFF or an OME-Zarr store, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path).rstrip("/"))
    if p.suffix.lower() == ".zarr" and p.is_dir():
        return read_slide_layers
    if p.suffix.lower() != ".zarr" and is_slide(p):
        return read_slide_layers
    return None


def _name(p: Path) -> str:
    name = p.name
    for tail in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(tail):
            return name[: -len(tail)]
    return p.stem


def read_slide_layers(path: str | list[str]) -> LayerData:
    """``[(levels, meta, "image")]`` with ``multiscale=True`` (``"labels"`` for label stores).

    Raises
    ------
    ImageReadError
        A damaged or truncated slide or store (one line naming the file).
    """
    p = Path(str(path[0] if isinstance(path, list) else path).rstrip("/"))
    if is_labels_zarr(p):
        levels = read_labels_zarr(p)
        meta: dict[str, Any] = {"name": _name(p), "multiscale": True}
        sizes = open_image_zarr(p)[2]  # the pixel size the labels were written with
        if sizes and sizes[0] is not None:  # so they lie over the slide they came from
            meta["scale"] = tuple(float(s) for s in sizes[0])
            meta["units"] = ("\u00b5m", "\u00b5m")
        return [(levels, meta, "labels")]
    slide = open_slide(p)
    meta = {
        "name": _name(p),
        "multiscale": True,
        "rgb": slide.axes.endswith("S") and slide.levels[0].shape[-1] in (3, 4),
        "metadata": {"levels": describe(slide), "path": str(p)},
    }
    if slide.axes.endswith("C"):
        meta["channel_axis"] = len(slide.axes) - 1
    if slide.pixel_sizes[0] is not None:
        meta["scale"] = tuple(float(s) for s in slide.pixel_sizes[0])
        meta["units"] = ("\u00b5m", "\u00b5m")
    return [(list(slide.levels), meta, "image")]
