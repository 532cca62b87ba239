"""The napari-free core: numpy, scikit-image and torch only.

Nothing under ``napari_cellseg.core`` may import napari, qtpy or magicgui; a test checks
this in a subprocess. Submodules are imported lazily by their users so that importing
``napari_cellseg.core`` stays cheap.
"""

from napari_cellseg.core.errors import (
    CellsegError,
    ImageReadError,
    ImageWriteError,
    ModelBuildError,
    WeightFileError,
)

__all__ = [
    "CellsegError",
    "ImageReadError",
    "ImageWriteError",
    "ModelBuildError",
    "WeightFileError",
]
