"""Model builders, model cards and weight files (napari-free).

>>> from napari_cellseg.models import build_model, available_families
>>> available_families()
['maskrcnn', 'unet']
"""

from napari_cellseg.models.build import available_families, build_model
from napari_cellseg.models.bundled import list_bundled_weights
from napari_cellseg.models.card import ModelCard, ModelCardError
from napari_cellseg.models.maskrcnn import build_maskrcnn
from napari_cellseg.models.unet import build_unet
from napari_cellseg.models.weights import LoadedModel, load_weights, read_card, save_weights

__all__ = [
    "LoadedModel",
    "ModelCard",
    "ModelCardError",
    "available_families",
    "build_maskrcnn",
    "build_model",
    "build_unet",
    "list_bundled_weights",
    "load_weights",
    "read_card",
    "save_weights",
]
