"""Segmentation losses for U-Net training: cross-entropy/BCE, focal and soft Dice.

Target pixels equal to :data:`~napari_cellseg.training.targets.IGNORE` (outside a checked
region) have weight 0 in every loss: neither their value nor their gradient counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from napari_cellseg.training.targets import IGNORE

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _valid(target: torch.Tensor) -> torch.Tensor:
    """1.0 where the target counts, 0.0 at :data:`IGNORE` pixels (same shape as ``target``)."""
    return (target != IGNORE).to(torch.float32)


def _mean(per_pixel: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of a per-pixel loss over the pixels that count (the plain mean when all do)."""
    valid = _valid(target)
    if bool(valid.all()):
        return per_pixel.mean()
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1.0)


def _per_pixel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel (binary) cross-entropy; ignored pixels get a valid dummy class."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits, target.float().clamp(min=0), reduction="none"
        )
    return F.cross_entropy(logits, target.long().clamp(min=0), reduction="none")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over classes (softmax, long target) or the foreground (sigmoid)."""
    valid = _valid(target)
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits) * valid
        onehot = target.float().clamp(min=0) * valid
    else:
        valid = valid[:, None]
        probs = torch.softmax(logits, dim=1) * valid
        onehot = F.one_hot(target.long().clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2)
        onehot = onehot.float() * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * intersection + eps) / (denominator + eps)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) for softmax (long target) or sigmoid (float target)."""
    ce = _per_pixel_ce(logits, target)
    p_t = torch.exp(-ce)
    return _mean((1 - p_t) ** gamma * ce, target)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (softmax) or binary cross-entropy (one sigmoid output)."""
    if bool((target == IGNORE).any()):
        return _mean(_per_pixel_ce(logits, target), target)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, target.float())
    return F.cross_entropy(logits, target.long())


def build_loss(name: str) -> LossFn:
    """``dice+ce`` (default), ``dice+focal``, ``ce`` or ``focal``.

    >>> loss = build_loss("dice+ce")
    >>> float(loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))) > 0
    True
    """
    parts = name.split("+")
    table: dict[str, LossFn] = {"dice": soft_dice_loss, "ce": cross_entropy, "focal": focal_loss}
    fns = [table[p] for p in parts]
    return lambda logits, target: sum(fn(logits, target) for fn in fns)
