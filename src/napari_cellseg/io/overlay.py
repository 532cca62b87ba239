"""Overlay PNGs: instance outlines drawn on an image, for reports and the headless demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_cellseg.errors import CellsegError


def to_display_rgb(image: np.ndarray, *, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Return a uint8 RGB view of a 2-D grey, RGB or RGBA image (percentile-stretched).

    >>> to_display_rgb(np.arange(16, dtype=np.uint16).reshape(4, 4)).shape
    (4, 4, 3)
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise CellsegError(f"an overlay needs a 2-D grey or RGB(A) image, got shape {image.shape}")
    data = image.astype(np.float32)
    lo, hi = np.percentile(data, (low, high))
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
    rgb = scaled if scaled.ndim == 3 else np.repeat(scaled[..., None], 3, axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def label_overlay(
    image: np.ndarray, labels: np.ndarray, *, colour: tuple[int, int, int] = (255, 220, 0)
) -> np.ndarray:
    """Draw the outlines of the instances in ``labels`` on ``image`` (uint8 RGB out)."""
    from skimage.segmentation import find_boundaries

    rgb = to_display_rgb(image)
    if labels.shape != rgb.shape[:2]:
        raise CellsegError(
            f"labels of shape {labels.shape} do not match the image's {rgb.shape[:2]}"
        )
    outline = find_boundaries(labels, mode="inner")
    rgb[outline] = colour
    return rgb


def write_overlay_png(path: str | Path, image: np.ndarray, labels: np.ndarray) -> Path:
    """Write :func:`label_overlay` as a PNG, atomically."""
    import io

    import imageio.v3 as iio

    from napari_cellseg.io.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    iio.imwrite(buffer, label_overlay(image, labels), extension=".png")
    return atomic_write_bytes(Path(path), buffer.getvalue())
