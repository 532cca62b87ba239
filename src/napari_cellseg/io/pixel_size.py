"""The pixel size (micrometres) a TIFF file records: OME metadata, else resolution tags.

The z step of a stack (:func:`tiff_z_step`, :func:`file_z_spacing`) comes from the OME
``PhysicalSizeZ`` or ImageJ's ``spacing``.

Resolution tags count only with a real unit: an ImageJ unit, or centimetre/millimetre/
micrometre, or inches at a resolution that is not an image editor's default (72, 96, 300 dpi...).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import tifffile


def tiff_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    """Pixel size ``(y, x)`` in micrometres recorded by an open TIFF file, or None.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.

    Returns
    -------
    tuple of float or None
        From the OME-XML ``PhysicalSizeY/X`` when present, else from the resolution tags;
        None when neither gives a calibration.
    """
    size = _ome_pixel_size(tif) if tif.is_ome else None
    return size if size is not None else _tag_pixel_size(tif)


# Length units (lower case, micro signs normalised to "u") -> micrometres.
_UNIT_UM = {
    "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "\u00e5": 1e-4, "angstrom": 1e-4, "inch": 25400.0,
}  # fmt: skip
# Resolutions image editors write by default; they are not a microscope calibration.
_DEFAULT_DPI = {72.0, 96.0, 150.0, 300.0, 600.0, 1200.0}


def _unit_to_um(unit: str | None) -> float | None:
    if not unit:
        return None
    key = unit.strip().replace("\\u00B5", "u").replace("\u00b5", "u").replace("\u03bc", "u")
    return _UNIT_UM.get(key.lower())


def _ome_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    xml = tif.ome_metadata
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for ax in ("Y", "X"):
        value = pixels.get(f"PhysicalSize{ax}")
        factor = _unit_to_um(pixels.get(f"PhysicalSize{ax}Unit", "um"))
        if value is None or factor is None:
            return None
        sizes.append(float(value) * factor)
    return sizes[0], sizes[1]


def _tag_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    """Pixel size from X/YResolution with an ImageJ unit or a TIFF resolution unit."""
    page = tif.pages[0]
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if xres is None or yres is None:
        return None
    res = []
    for tag in (yres, xres):
        num, den = tag.value
        res.append(num / den if den else 0.0)
    if min(res) <= 0:
        return None
    factor: float | None = None
    if tif.is_imagej and tif.imagej_metadata and tif.imagej_metadata.get("unit"):
        factor = _unit_to_um(str(tif.imagej_metadata["unit"]))
    elif page.resolutionunit == tifffile.RESUNIT.INCH and not _DEFAULT_DPI.issuperset(res):
        factor = 25400.0
    elif page.resolutionunit == tifffile.RESUNIT.CENTIMETER:
        factor = 1e4
    elif page.resolutionunit == tifffile.RESUNIT.MILLIMETER:
        factor = 1e3
    elif page.resolutionunit == tifffile.RESUNIT.MICROMETER:
        factor = 1.0
    if factor is None:
        return None
    return factor / res[0], factor / res[1]


def tiff_z_step(tif: tifffile.TiffFile) -> float | None:
    """Distance between z planes in micrometres recorded by an open TIFF file, or None.

    From the OME-XML ``PhysicalSizeZ`` (and its unit), else ImageJ's ``spacing`` in the
    file's ImageJ ``unit``.
    """
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            root = None
        pixels = (
            None
            if root is None
            else next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
        )
        value = None if pixels is None else pixels.get("PhysicalSizeZ")
        factor = None if pixels is None else _unit_to_um(pixels.get("PhysicalSizeZUnit", "um"))
        if value is not None and factor is not None:
            return _positive(float(value) * factor)
    meta = tif.imagej_metadata if tif.is_imagej else None
    if meta and meta.get("spacing") and meta.get("unit"):
        factor = _unit_to_um(str(meta["unit"]))
        if factor is not None:
            return _positive(float(meta["spacing"]) * factor)
    return None


def file_z_spacing(path: Path | None, pixel_size_um: tuple[float, float] | None) -> float | None:
    """A TIFF stack's z step over its xy pixel size (:func:`tiff_z_step`), or None.

    None for other files, a file without a z step or an image without a pixel size; the
    file is opened for its metadata only.

    >>> file_z_spacing(None, (0.5, 0.5)) is None
    True
    """
    if path is None or pixel_size_um is None or Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            step = tiff_z_step(tif)
    except Exception:  # unreadable metadata: no z step, as if none were recorded
        return None
    xy = math.sqrt(pixel_size_um[0] * pixel_size_um[1])
    return None if step is None or not xy > 0 else step / xy


def _positive(value: float) -> float | None:
    return value if math.isfinite(value) and value > 0 else None
