"""Training targets from an instance label image, for each model family.

U-Net: a class map (background / interior / boundary, or background / foreground) or a
foreground probability map, as the model card's ``outputs`` say. Mask R-CNN: the target dict
torchvision's detection models take (boxes, labels, masks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_cellseg.errors import CellsegError

__all__ = ["IGNORE", "UNET_OUTPUTS", "maskrcnn_target", "unet_target"]

UNET_OUTPUTS: tuple[tuple[str, ...], ...] = (
    ("background", "interior", "boundary"),
    ("background", "foreground"),
    ("foreground",),
)
"""U-Net output layouts :func:`unet_target` can build targets for."""

IGNORE = -1
"""U-Net target value of a pixel outside a checked region: the losses give it weight 0."""


def _as_labels(instances: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(instances, torch.Tensor):
        instances = instances.detach().cpu().numpy()
    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise CellsegError(f"instance labels must be 2-D (H, W), got shape {labels.shape}")
    if labels.dtype.kind not in "biu":
        raise CellsegError(f"instance labels must be integers, got {labels.dtype}")
    return labels


def unet_target(instances: np.ndarray | torch.Tensor, outputs: Sequence[str]) -> torch.Tensor:
    """The U-Net training target of an instance label image.

    Parameters
    ----------
    instances : numpy.ndarray or torch.Tensor
        ``(H, W)`` integer labels, 0 = background.
    outputs : sequence of str
        The model card's outputs: ``["background", "interior", "boundary"]``,
        ``["background", "foreground"]`` or ``["foreground"]``.

    Returns
    -------
    torch.Tensor
        Three outputs: int64 ``(H, W)`` with 0 background, 1 interior, 2 boundary, where the
        boundary is every object pixel next to a pixel of another label (background or a
        touching object; ``find_boundaries(mode="inner")``). Two outputs: int64 ``(H, W)``
        0/1. One output (sigmoid): float32 ``(1, H, W)`` 0/1.

    Examples
    --------
    >>> labels = np.zeros((5, 6), int)
    >>> labels[1:4, 1:3], labels[1:4, 3:5] = 1, 2
    >>> unet_target(labels, ["background", "interior", "boundary"]).numpy()
    array([[0, 0, 0, 0, 0, 0],
           [0, 2, 2, 2, 2, 0],
           [0, 2, 2, 2, 2, 0],
           [0, 2, 2, 2, 2, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    labels = _as_labels(instances)
    layout = tuple(outputs)
    foreground = labels > 0
    if layout == UNET_OUTPUTS[0]:
        boundary = find_boundaries(labels, mode="inner") & foreground
        target = foreground.astype(np.int64)
        target[boundary] = 2
        return torch.from_numpy(target)
    if layout == UNET_OUTPUTS[1]:
        return torch.from_numpy(foreground.astype(np.int64))
    if layout == UNET_OUTPUTS[2]:
        return torch.from_numpy(foreground.astype(np.float32)[None])
    known = "; ".join(str(list(o)) for o in UNET_OUTPUTS)
    raise CellsegError(
        f"cannot build U-Net training targets for outputs {list(layout)}: use {known}"
    )


def maskrcnn_target(instances: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """The Mask R-CNN training target of an instance label image.

    Parameters
    ----------
    instances : numpy.ndarray or torch.Tensor
        ``(H, W)`` integer labels, 0 = background; labels need not be consecutive.

    Returns
    -------
    dict
        ``boxes`` float32 ``(N, 4)`` as ``x1, y1, x2, y2`` with ``x2 = max x + 1`` (and
        likewise y), ``labels`` int64 ``(N,)`` all ones, ``masks`` uint8 ``(N, H, W)``, one
        per object in increasing label order. Objects of zero width or height are dropped.
        Without objects: ``boxes`` ``(0, 4)``, ``labels`` ``(0,)``, ``masks`` ``(0, H, W)``.

    Examples
    --------
    >>> labels = np.zeros((4, 5), np.uint16)
    >>> labels[1:3, 2:5] = 7
    >>> t = maskrcnn_target(labels)
    >>> t["boxes"].tolist(), t["labels"].tolist(), tuple(t["masks"].shape)
    ([[2.0, 1.0, 5.0, 3.0]], [1], (1, 4, 5))
    """
    labels = _as_labels(instances)
    height, width = labels.shape
    ids = np.unique(labels)
    ids = ids[ids > 0]
    slices = ndi.find_objects(labels.astype(np.intp, copy=False)) if ids.size else []
    kept = [
        (label, slices[label - 1])
        for label in ids.tolist()
        if min(s.stop - s.start for s in slices[label - 1]) >= 1
    ]
    if not kept:
        return {
            "boxes": torch.zeros((0, 4), dtype=torch.float32),
            "labels": torch.zeros((0,), dtype=torch.int64),
            "masks": torch.zeros((0, height, width), dtype=torch.uint8),
        }
    masks = np.zeros((len(kept), height, width), np.uint8)
    for k, (label, (sy, sx)) in enumerate(kept):  # only inside each box: O(sum of box areas)
        masks[k, sy, sx] = labels[sy, sx] == label
    boxes = [(sx.start, sy.start, sx.stop, sy.stop) for _, (sy, sx) in kept]
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.ones(len(kept), dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }
