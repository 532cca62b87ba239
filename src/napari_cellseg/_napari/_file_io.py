"""napari reader and writer contributions: our GeoJSON and label TIFFs in, exports out.

These functions follow npe2's reader and writer signatures and import neither napari nor Qt
(so they are tested without a viewer): a reader returns ``[(data, meta, "labels")]``, a
writer gets a Labels layer's data and meta and returns the paths it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_cellseg.io.geojson import FORMAT

__all__ = ["get_reader", "read_labels_layer", "write_geojson_layer", "write_roi_zip_layer"]

LayerData = list[tuple[Any, dict[str, Any], str]]
_PEEK_BYTES = 4096


def _is_our_geojson(path: Path) -> bool:
    """Whether a ``.geojson`` file is one we wrote (the 'cellseg' member comes first)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(_PEEK_BYTES)
    except OSError:
        return False
    return re.search(rf'"format"\s*:\s*"{re.escape(FORMAT)}"', head) is not None


def get_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """The reader for a napari-cellseg GeoJSON or a ``*_labels.tif``, else None.

    GeoJSON files that napari-cellseg did not write (no image shape) are left to other
    readers.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".geojson") and _is_our_geojson(p):
        return read_labels_layer
    if name.endswith(("_labels.tif", "_labels.tiff")):
        return read_labels_layer
    return None


def _layer_name(p: Path) -> str:
    name = p.name
    for tail in (".geojson", ".tiff", ".tif"):
        if name.lower().endswith(tail):
            return name[: -len(tail)]
    return p.stem


def read_labels_layer(path: str | list[str]) -> LayerData:
    """A Labels layer from our GeoJSON (rasterised at its stored shape) or a label TIFF.

    Raises
    ------
    CellsegError
        If the file is not one napari-cellseg wrote or cannot be read.
    """
    from napari_cellseg.io.geojson import read_geojson_labels
    from napari_cellseg.io.images import read_labels

    p = Path(path[0] if isinstance(path, list) else path)
    if p.name.lower().endswith(".geojson"):
        labels, meta = read_geojson_labels(p)
        metadata = {"source": str(p), "pixel_size_um": meta["pixel_size_um"]}
    else:
        labels = read_labels(p)
        metadata = {"source": str(p)}
    return [(labels, {"name": _layer_name(p), "metadata": metadata}, "labels")]


def _write(path: str, data: Any, meta: dict[str, Any], fmt: str) -> list[str]:
    from napari_cellseg.io.exports import export_labels

    metadata = meta.get("metadata") or {}
    pixel_size = metadata.get("pixel_size_um")
    name = meta.get("name") or "labels"
    written = export_labels(
        path,
        data,
        fmt,
        pixel_size_um=tuple(pixel_size) if pixel_size else None,
        source=f"layer {name!r}",
    )
    return [str(written)]


def write_geojson_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari writer: a Labels layer as QuPath GeoJSON (``.geojson``)."""
    return _write(path, data, meta, "geojson")


def write_roi_zip_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari writer: a Labels layer as a Fiji/ImageJ ROI set (``.zip``)."""
    return _write(path, data, meta, "roi")
