"""napari-cellseg: U-Net and Mask R-CNN segmentation of cells, nuclei and glands.

Importing the package is cheap: it does not import torch, napari or Qt.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
