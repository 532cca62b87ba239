"""Label images as QuPath GeoJSON detections, and that GeoJSON back to label images.

One ``Feature`` per object and plane: a ``Polygon`` (a ``MultiPolygon`` when the object has
several pieces) with its holes, in full-resolution ``(x, y)`` pixel coordinates whose origin
is the top-left corner of the image (:mod:`.outlines`). Properties follow QuPath's convention:
``"objectType": "detection"``, ``"name"`` (the label id), an optional ``"classification"`` and
``"measurements"``: ``label``, ``area`` (pixels), ``centroid_x``/``centroid_y`` (same
coordinates as the polygons), ``equivalent_diameter`` (pixels), ``mean_intensity`` (per
channel ``mean_intensity_cK`` for several channels) when an image is given, and ``area_um2``
and ``equivalent_diameter_um`` when the pixel size is known. Objects of a stack carry the
plane in the geometry (``"plane": {"c": -1, "z": Z, "t": T}``, as QuPath writes it).

The collection has a ``"cellseg"`` member (ignored by QuPath) holding the label image's shape,
axes and pixel size, so :func:`read_geojson_labels` rebuilds the same label image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.errors import ImageReadError, ImageWriteError
from napari_cellseg.io.atomic import atomic_write_text
from napari_cellseg.io.files import check_destination, label_dtype, write_problem
from napari_cellseg.io.outlines import Part, fill_into, iter_objects, iter_planes, stack_axes

__all__ = ["FORMAT", "labels_to_geojson", "read_geojson_labels", "write_geojson"]

FORMAT = "napari-cellseg labels"
VERSION = 1


def _measure(plane: np.ndarray, image: np.ndarray | None, pixel_size_um: Any) -> dict:
    """``{label: {name: value}}`` for one plane (``image``: ``(Y, X)`` or ``(Y, X, C)``)."""
    from skimage.measure import regionprops_table

    props = ["label", "area", "centroid", "equivalent_diameter_area"]
    intensity = None
    if image is not None:
        intensity = image if image.ndim == 3 else image[..., None]
        props.append("intensity_mean")
    table = regionprops_table(plane, intensity, properties=props)
    n_channels = 0 if intensity is None else intensity.shape[-1]
    out: dict[int, dict[str, Any]] = {}
    for row, label in enumerate(table["label"]):
        values: dict[str, Any] = {
            "label": int(label),
            "area": float(table["area"][row]),
            "centroid_x": float(table["centroid-1"][row]) + 0.5,
            "centroid_y": float(table["centroid-0"][row]) + 0.5,
            "equivalent_diameter": float(table["equivalent_diameter_area"][row]),
        }
        for k in range(n_channels):
            name = "mean_intensity" if n_channels == 1 else f"mean_intensity_c{k}"
            values[name] = float(table[f"intensity_mean-{k}"][row])
        if pixel_size_um is not None:
            sy, sx = (float(v) for v in pixel_size_um)
            values["area_um2"] = values["area"] * sy * sx
            values["equivalent_diameter_um"] = values["equivalent_diameter"] * float(
                np.sqrt(sy * sx)
            )
        out[int(label)] = values
    return out


def _geometry(parts: list[Part]) -> dict[str, Any]:
    polygons = [[ring.tolist() for ring in (outer, *holes)] for outer, holes in parts]
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def labels_to_geojson(
    labels: np.ndarray,
    *,
    image: np.ndarray | None = None,
    axes: str | None = None,
    pixel_size_um: tuple[float, float] | None = None,
    classification: str | None = None,
) -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of QuPath detections, one feature per object and plane.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer instance labels, 2-D or a stack with leading Z/T axes.
    image : numpy.ndarray, optional
        The image, shaped like `labels` plus an optional trailing channel axis; adds mean
        intensities.
    axes : str, optional
        Axes of `labels` (``YX``, ``ZYX``, ``TYX``, ``TZYX``); by default from the dimension.
    pixel_size_um : tuple of float, optional
        Pixel size (y, x) in micrometres: adds ``area_um2`` and ``equivalent_diameter_um``.
    classification : str, optional
        A QuPath class name given to every object.

    Returns
    -------
    dict
        The GeoJSON document (``json.dumps`` it, or use :func:`write_geojson`).

    Examples
    --------
    >>> lab = np.zeros((4, 5), np.uint16); lab[1:3, 1:4] = 7
    >>> doc = labels_to_geojson(lab)
    >>> feature, = doc["features"]
    >>> feature["properties"]["name"], feature["properties"]["measurements"]["area"]
    ('7', 6.0)
    >>> feature["geometry"]["coordinates"][0][:3]
    [[3.5, 3.0], [1.5, 3.0], [1.0, 2.5]]
    """
    labels = np.asarray(labels)
    axes = stack_axes(labels, axes)
    features = []
    for index, position, plane in iter_planes(labels, axes):
        plane_image = None if image is None else np.asarray(image[index])
        measurements = _measure(plane, plane_image, pixel_size_um)
        for label, parts in iter_objects(plane):
            geometry = _geometry(parts)
            if len(axes) > 2:
                geometry["plane"] = {"c": -1, "z": position["z"], "t": position["t"]}
            properties: dict[str, Any] = {"objectType": "detection", "name": str(label)}
            if classification:
                properties["classification"] = {"name": classification}
            properties["measurements"] = measurements[label]
            features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "shape": [int(s) for s in labels.shape],
        "axes": axes,
        "pixel_size_um": None if pixel_size_um is None else [float(v) for v in pixel_size_um],
    }
    return {"type": "FeatureCollection", "cellseg": meta, "features": features}


def write_geojson(path: str | os.PathLike[str], labels: np.ndarray, **options: Any) -> Path:
    """Write :func:`labels_to_geojson` to `path` atomically (options as there).

    Raises
    ------
    ImageWriteError
        If the folder is missing or not writable, or the disk is full (nothing is left).
    """
    p = Path(path)
    check_destination(p, ".geojson")
    text = json.dumps(labels_to_geojson(labels, **options), separators=(",", ":"))
    try:
        atomic_write_text(p, text)
    except OSError as exc:
        raise ImageWriteError(p, write_problem(exc)) from exc
    return p


def _rings(p: Path, polygon: Any, where: str) -> Part:
    try:
        rings = [np.asarray(ring, dtype=float) for ring in polygon]
    except (TypeError, ValueError):
        raise ImageReadError(p, f"{where}: coordinates are not lists of [x, y] numbers") from None
    for ring in rings:
        if ring.ndim != 2 or ring.shape[1] < 2 or len(ring) < 3 or not np.isfinite(ring).all():
            raise ImageReadError(p, f"{where}: a ring needs at least 3 finite [x, y] points")
    if not rings:
        raise ImageReadError(p, f"{where}: a polygon without coordinates")
    return rings[0][:, :2], [r[:, :2] for r in rings[1:]]


def _feature_parts(p: Path, feature: Any, number: int) -> list[Part]:
    where = f"feature {number}"
    geometry = feature.get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geometry, dict):
        raise ImageReadError(p, f"{where} has no geometry; is this a GeoJSON of objects?")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        return [_rings(p, coords, where)]
    if kind == "MultiPolygon" and isinstance(coords, list):
        return [_rings(p, polygon, where) for polygon in coords]
    raise ImageReadError(p, f"{where} is a {kind}, not a Polygon or MultiPolygon")


def _feature_label(feature: dict, number: int) -> int:
    properties = feature.get("properties") or {}
    measurements = properties.get("measurements")
    if isinstance(measurements, dict) and isinstance(measurements.get("label"), int | float):
        return int(measurements["label"])
    try:
        return int(properties.get("name"))
    except (TypeError, ValueError):
        return number


def _shape(p: Path, meta: Any) -> tuple[tuple[int, ...], str]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ImageReadError(
            p,
            "not a GeoJSON napari-cellseg wrote (no 'cellseg' member with the image shape); "
            "export the labels with `cellseg export` or the Export button",
        )
    try:
        shape = tuple(int(s) for s in meta["shape"])
        axes = stack_axes(np.empty((0,) * len(shape)), meta.get("axes"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageReadError(p, f"the 'cellseg' member is damaged ({exc}); export again") from None
    if any(s <= 0 for s in shape):
        raise ImageReadError(p, f"the 'cellseg' member has an invalid shape {list(shape)}")
    return shape, axes


def read_geojson_labels(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Rasterise a GeoJSON written by :func:`write_geojson` back into a label image.

    Each feature's label is its ``measurements["label"]`` (else its ``name``, else its
    position); holes are left out; a pixel belongs to an object when its centre lies inside.

    Returns
    -------
    labels : numpy.ndarray
        uint16 (uint32 for labels above 65535), of the stored shape.
    meta : dict
        The ``"cellseg"`` member: ``shape``, ``axes``, ``pixel_size_um``.

    Raises
    ------
    ImageReadError
        If the file is missing, not JSON, not a napari-cellseg GeoJSON, or has a feature
        that is not a polygon.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageReadError(p, "file not found; check the path") from None
    except json.JSONDecodeError as exc:
        raise ImageReadError(p, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError(p, f"could not read it ({exc}); check the file") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ImageReadError(p, "not a GeoJSON FeatureCollection")
    shape, axes = _shape(p, doc.get("cellseg"))
    features = doc.get("features")
    if not isinstance(features, list):
        raise ImageReadError(p, "the FeatureCollection has no 'features' list")
    found = [
        (_feature_label(f, n + 1), _feature_parts(p, f, n + 1), f) for n, f in enumerate(features)
    ]
    top = max((label for label, _, _ in found), default=0)
    labels = np.zeros(shape, label_dtype(max(top, 0)))
    lead = axes[:-2]
    for label, parts, feature in found:
        if label <= 0:
            continue
        plane = feature["geometry"].get("plane") or {}
        index = tuple(int(plane.get(a.lower(), 0) or 0) for a in lead)
        if any(not 0 <= i < s for i, s in zip(index, shape, strict=False)):
            raise ImageReadError(p, f"object {label} lies on plane {index}, outside {shape}")
        fill_into(labels[index], label, parts=parts)
    meta = doc["cellseg"]
    return labels, {"shape": list(shape), "axes": axes, "pixel_size_um": meta.get("pixel_size_um")}
