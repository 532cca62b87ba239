"""The U-Net family's training part: class-map targets, stacked batches, loss on the logits.

Used by :mod:`napari_cellseg.training.datasets` and :mod:`napari_cellseg.training.steps`
through the family table (:func:`napari_cellseg.families.family_part`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_cellseg.device import channels_last
from napari_cellseg.errors import CellsegError
from napari_cellseg.training.datasets import collate_unet
from napari_cellseg.training.targets import IGNORE, UNET_OUTPUTS, unet_target

collate = collate_unet
"""Stack samples into ``(images (B, C, p, p), targets (B, ...))``."""


def check_outputs(outputs: Sequence[str]) -> None:
    """Refuse outputs :func:`~napari_cellseg.training.targets.unet_target` cannot build."""
    if tuple(outputs) not in UNET_OUTPUTS:
        raise CellsegError(f"cannot train a U-Net with outputs {list(outputs)}")


def crop_target(
    labels: np.ndarray,
    outputs: Sequence[str],
    inner: tuple[slice, slice],
    *,
    region: np.ndarray | None = None,
) -> torch.Tensor:
    """The target of the ``inner`` patch of a crop's labels.

    Built on the whole crop (with its context), then cut, so that boundaries at the patch
    edge are right. Pixels outside ``region`` (bool, the crop's size), if given, are set to
    :data:`~napari_cellseg.training.targets.IGNORE`: the losses give them weight 0.
    """
    target = unet_target(labels, outputs)
    if region is not None:
        ignore = torch.tensor(IGNORE, dtype=target.dtype)
        target = torch.where(torch.from_numpy(np.asarray(region, bool)), target, ignore)
    return target[(Ellipsis, *inner)].clone()


def loss(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
) -> torch.Tensor:
    """``loss_fn`` of the model's logits (as float32) and the targets.

    The batch goes in channels-last (:func:`~napari_cellseg.device.channels_last`; the
    weights stay as they are): 1.12-1.86x the crops per second on the 2-core benchmark CPU
    (``bench/train_throughput.py --layouts``), the same gradients up to float rounding.
    """
    logits = model(channels_last(images.to(device, non_blocking=True)))
    return loss_fn(logits.float(), targets.to(device, non_blocking=True))


ENCODER_PREFIX = "encoder."
"""Parameters whose names start with this form the encoder (its own learning rate)."""


def features(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Forward a batch of tiles (for BatchNorm statistics: AdaBN)."""
    model(channels_last(images))
