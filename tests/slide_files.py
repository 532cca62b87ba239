"""Small whole-slide pyramids written in the tests: SubIFD OME-TIFF, SVS layout, OME-Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def rgb_tissue(height: int = 512, width: int = 768, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image of dark purple disks (nuclei) on a pale background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    grey = rng.integers(200, 230, (height, width)).astype(np.uint8)
    for cy in range(16, height, 32):
        for cx in range(16, width, 32):
            r = rng.integers(6, 11)
            grey[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(40, 90)
    return np.stack([grey, (grey * 0.7).astype(np.uint8), grey], axis=-1)


def levels_of(image: np.ndarray, n: int = 3) -> list[np.ndarray]:
    return [image[:: 2**i, :: 2**i] for i in range(n)]


def write_ome_pyramid(
    path: Path, image: np.ndarray, n: int = 3, pixel_um: float | None = 0.25, **kw
) -> Path:
    """A pyramidal OME-TIFF: level 0 with ``n - 1`` reduced SubIFDs (tiled, zlib)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = levels_of(image, n)
    meta = {"PhysicalSizeX": pixel_um, "PhysicalSizeY": pixel_um} if pixel_um else {}
    options = {"tile": (64, 64), "compression": "zlib", "photometric": "rgb", **kw}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(levels[0], subifds=n - 1, metadata=meta, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    return path


def write_svs(path: Path, image: np.ndarray, mpp: float = 0.5, mag: float = 20) -> Path:
    """An Aperio SVS layout: level 0, a thumbnail, two reduced levels (JPEG tiles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "Aperio Image Library v12.0.0\n"
    kw = {"photometric": "rgb", "compression": "jpeg", "metadata": None}
    h, w = image.shape[:2]
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image, tile=(128, 128), description=f"{head}{w}x{h}|AppMag = {mag}|MPP = {mpp}", **kw
        )
        tif.write(image[::8, ::8], description=f"{head}thumbnail", **kw)
        for step in (2, 4):
            tif.write(image[::step, ::step], tile=(128, 128), description=head, **kw)
    return path


def write_ome_zarr(path: Path, image: np.ndarray, n: int = 3, pixel_um: float = 0.5) -> Path:
    """An NGFF 0.4 OME-Zarr image (c, y, x) written with zarr directly."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for i, level in enumerate(levels_of(image, n)):
        data = np.moveaxis(level, -1, 0)
        group.create_array(str(i), data=data, chunks=(1, 64, 64))
        s = pixel_um * 2**i
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1, s, s]}]}
        )
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path
