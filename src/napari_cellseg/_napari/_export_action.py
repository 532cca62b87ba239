"""The Correct dock's "Export…" action: a Labels layer as QuPath GeoJSON or a Fiji ROI set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.io.exports import export_labels

EXPORT_CHOICES: dict[str, str] = {
    "QuPath GeoJSON (.geojson)": "geojson",
    "Fiji ROI set (.zip)": "roi",
}
"""What the dock's format menu shows, and the export format of each."""

_FILTERS = {"geojson": "GeoJSON (*.geojson)", "roi": "ImageJ ROI set (*.zip)"}


def default_export_path(layer: Any, fmt: str) -> Path:
    """Beside the layer's file when it came from one, else in the current folder, by name."""
    from napari_cellseg.io.exports import export_path

    source = getattr(getattr(layer, "source", None), "path", None)
    source = source or (getattr(layer, "metadata", None) or {}).get("source")
    if source and not str(source).lower().endswith(".geojson"):
        return export_path(Path(source), fmt)
    safe = re.sub(r"[^\w.-]+", "_", str(layer.name)).strip("_")
    return export_path(Path.cwd() / f"{safe or 'labels'}_labels.tif", fmt)


def ask_export_path(parent: Any, default: Path, fmt: str) -> Path | None:
    """A save dialog; None when cancelled. The format's suffix is added when missing."""
    from qtpy.QtWidgets import QFileDialog

    name, _ = QFileDialog.getSaveFileName(parent, "Export labels", str(default), _FILTERS[fmt])
    if not name:
        return None
    path = Path(name)
    suffix = ".geojson" if fmt == "geojson" else ".zip"
    return path if path.suffix.lower() == suffix else path.with_name(path.name + suffix)


def _intensities(image_layer: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The image's pixels laid out like the labels (plus channels last), when they fit."""
    if image_layer is None:
        return None
    data = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
    data = np.asarray(data)
    fits = data.shape == shape or (image_layer.rgb and data.shape[:-1] == shape)
    return data if fits else None


def export_layer(layer: Any, path: str | Path, fmt: str, image_layer: Any = None) -> Path:
    """Export a Labels layer (mean intensities from `image_layer` when it fits); atomic.

    Raises
    ------
    CellsegError
        If the layer does not hold integer labels or the file cannot be written.
    """
    data = np.asarray(layer.data)
    pixel_size = (getattr(layer, "metadata", None) or {}).get("pixel_size_um")
    return export_labels(
        path,
        data,
        fmt,
        image=_intensities(image_layer, data.shape),
        pixel_size_um=tuple(pixel_size) if pixel_size else None,
        source=f"layer {layer.name!r}",
    )
