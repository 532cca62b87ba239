"""Segmentation losses for U-Net training: cross-entropy/BCE, focal and soft Dice."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over classes (softmax, long target) or the foreground (sigmoid)."""
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits)
        onehot = target.float()
    else:
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * intersection + eps) / (denominator + eps)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) for softmax (long target) or sigmoid (float target)."""
    if logits.shape[1] == 1:
        bce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        p_t = torch.exp(-bce)
        return ((1 - p_t) ** gamma * bce).mean()
    ce = F.cross_entropy(logits, target.long(), reduction="none")
    p_t = torch.exp(-ce)
    return ((1 - p_t) ** gamma * ce).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (softmax) or binary cross-entropy (one sigmoid output)."""
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
