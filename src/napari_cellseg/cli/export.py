"""``cellseg export LABELS --to geojson|roi``: label images as QuPath GeoJSON or Fiji ROI sets.

Also the ``--export`` option ``predict`` and ``batch`` share (:func:`add_export_option`) and
the helper that writes the exports beside a label file (:func:`write_exports`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_export_option", "add_export_parser", "run_export", "write_exports"]


def add_export_option(p: argparse.ArgumentParser) -> None:
    """``--export geojson,roi``: exports written beside each label file."""
    p.add_argument(
        "--export",
        default=None,
        metavar="geojson,roi",
        help="also write the objects beside each label file as QuPath GeoJSON "
        "(<name>_labels.geojson) and/or a Fiji ROI set (<name>_rois.zip)",
    )


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="export a label image to QuPath GeoJSON or a Fiji/ImageJ ROI set",
        description=(
            "Write the objects of a label image as QuPath detections (GeoJSON, with "
            "measurements) or a Fiji/ImageJ ROI set (.zip), beside the label file unless "
            "--out is given."
        ),
    )
    p.add_argument("labels", type=Path, metavar="LABELS", help="label image (TIFF or PNG)")
    p.add_argument(
        "--to",
        required=True,
        metavar="geojson|roi",
        help="format: geojson, roi, or both separated by a comma",
    )
    p.add_argument(
        "--image", type=Path, default=None, help="the image: adds mean intensities (GeoJSON)"
    )
    p.add_argument("--out", type=Path, default=None, help="file to write (one format only)")
    p.add_argument(
        "--axes", default=None, help="axes of a label stack, e.g. TYX (default: from the file)"
    )
    p.set_defaults(func=run_export)


def write_exports(
    labels_path: str | Path,
    labels: np.ndarray,
    formats: tuple[str, ...],
    *,
    image: Any = None,
    image_axes: str | None = None,
    axes: str | None = None,
    pixel_size_um: tuple[float, float] | None = None,
) -> list[Path]:
    """Write each format beside `labels_path` (``predict --export``); the paths written.

    The image adds mean intensities when it fits the labels; otherwise it is left out.
    """
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.io.exports import export_labels, export_path, image_for_labels

    intensities = None
    if image is not None and image_axes and "geojson" in formats:
        try:
            intensities = image_for_labels(image, image_axes, labels.shape, labels_path)
        except CellsegError:
            intensities = None
    return [
        export_labels(
            export_path(labels_path, fmt),
            labels,
            fmt,
            image=intensities,
            axes=axes,
            pixel_size_um=pixel_size_um,
        )
        for fmt in formats
    ]


def run_export(args: argparse.Namespace) -> int:
    """Export one label image; one line per file written."""
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.io.exports import (
        export_labels,
        export_path,
        image_for_labels,
        parse_export_formats,
    )
    from napari_cellseg.io.images import read_image, read_labels

    formats = parse_export_formats(args.to)
    if not formats:
        raise CellsegError("--to needs a format: geojson or roi")
    if args.out is not None and len(formats) > 1:
        raise CellsegError("--out names one file: give one format with --to, or leave out --out")
    labels = read_labels(args.labels)
    stored = read_image(args.labels)  # the label file's axes and pixel size
    axes = args.axes.upper() if args.axes else None
    if axes is None and "".join(a for a in stored.axes if a not in "CS") == stored.axes:
        axes = stored.axes if len(stored.axes) == labels.ndim else None
    pixel_size = stored.pixel_size_um
    intensities = None
    if args.image is not None:
        image = read_image(args.image)
        intensities = image_for_labels(image.data, image.axes, labels.shape, args.image)
        pixel_size = pixel_size or image.pixel_size_um
    n_objects = int(np.count_nonzero(np.unique(labels)))
    for fmt in formats:
        out = args.out or export_path(args.labels, fmt)
        if out.resolve() == args.labels.resolve():
            raise CellsegError(f"{out}: the export would replace the label file; choose --out")
        written = export_labels(
            out,
            labels,
            fmt,
            image=intensities,
            axes=axes,
            pixel_size_um=pixel_size,
            source=args.labels,
        )
        print(f"{args.labels}: {n_objects} objects -> {written}", file=sys.stdout)
    return 0
