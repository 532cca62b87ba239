"""The Mask R-CNN family's training part: box/mask targets, listed batches, torchvision's losses.

Used by :mod:`napari_cellseg.training.datasets` and :mod:`napari_cellseg.training.steps`
through the family table (:func:`napari_cellseg.families.family_part`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

from napari_cellseg.training.datasets import collate_maskrcnn
from napari_cellseg.training.targets import maskrcnn_target

collate = collate_maskrcnn
"""Samples as ``(list of images, list of target dicts)``."""


def check_outputs(outputs: Sequence[str]) -> None:
    """Any outputs will do: the targets are boxes and masks whatever the classes are called."""


def crop_target(
    labels: np.ndarray,
    outputs: Sequence[str],
    inner: tuple[slice, slice],
    *,
    region: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """The target dict of the ``inner`` patch of a crop's labels (relabelled 1..N first).

    With a ``region`` (bool, the crop's size) the objects are clipped to it: what lies
    outside was not checked, and :func:`region_input` blanks it in the image, so it is
    learnt neither as an object nor as background. An object cut by the region's edge
    becomes the part of it inside, as an object cut by the image's edge does.
    """
    patch = labels[inner]
    if region is not None:
        patch = np.where(region[inner], patch, 0)
    relabelled = relabel_sequential(patch)[0]
    return maskrcnn_target(relabelled)


def region_input(image: torch.Tensor, region: np.ndarray) -> torch.Tensor:
    """The crop's image with the pixels outside ``region`` set to 0 (the augmentation's fill).

    Mask R-CNN's losses cannot weigh pixels; blanking what was not checked keeps unchecked
    objects from being learnt as background.
    """
    return image * torch.from_numpy(region).to(image.dtype)


def loss(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
) -> torch.Tensor:
    """The sum of torchvision's training losses (``loss_fn`` is not used)."""
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return sum(model(images, targets).values())


ENCODER_PREFIX = "backbone.body."
"""Parameters whose names start with this form the encoder (its own learning rate)."""


def features(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Forward a batch of tiles through the backbone, as the detector would see them."""
    batch, _ = model.transform(list(images))
    model.backbone(batch.tensors)
