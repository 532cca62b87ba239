"""The optimisation machinery of training: data loader, optimiser, schedule and one step.

Used by :func:`napari_cellseg.training.loop.iter_train`, which owns the epochs, validation,
checkpoints and weight files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_cellseg.families import family_part
from napari_cellseg.models import ModelCard
from napari_cellseg.params import TrainParams


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """Keep BatchNorm running statistics fixed (eval mode); weights still learn."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def scheduler_per_step(params: TrainParams) -> bool:
    """Cosine decays every step; step decay and constant act per epoch."""
    return params.resolved("schedule") == "cosine"


def make_loader(pairs, card: ModelCard, params: TrainParams):
    """A DataLoader of random augmented crops of ``pairs`` (and its dataset).

    Crops are rescaled to ``params.object_diameter`` (resolved by the training loop; ``None``
    or 0: not rescaled) with ``params.scale_jitter``; the dataset measures each image's object
    diameter once (``dataset.diameters``).
    """
    from napari_cellseg.training.augment import build_augmentation
    from napari_cellseg.training.datasets import CropDataset
    from napari_cellseg.training.pairs import load_pair, load_region

    items = [load_pair(pair, card) for pair in pairs]
    colour = sum(
        1
        for image, _ in items
        if image.shape[0] == 3 and not np.allclose(image[0], image[1], atol=1e-3)
    )
    augment = build_augmentation(rgb_histology=colour > len(items) / 2) if params.augment else None
    dataset = CropDataset(
        items,
        family=card.family,
        outputs=card.outputs,
        patch_size=params.patch_size,
        samples_per_epoch=params.samples_per_epoch,
        augment=augment,
        seed=params.seed,
        object_diameter=params.object_diameter,
        scale_jitter=params.scale_jitter,
        regions=[load_region(p, lab.shape) for p, (_, lab) in zip(pairs, items, strict=True)],
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=params.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=params.num_workers,
        collate_fn=family_part(card.family, "training").collate,
        persistent_workers=params.num_workers > 0,
    )
    return loader, dataset


def make_optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the trainable parameters, as ``params`` say."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr, wd = params.resolved("learning_rate"), params.resolved("weight_decay")
    if params.resolved("optimizer") == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=wd)


def make_scheduler(optimizer, params: TrainParams, steps_per_epoch: int):
    """The learning-rate schedule: cosine (per step), step decay or constant (per epoch)."""
    schedule = params.resolved("schedule")
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, params.epochs * steps_per_epoch), eta_min=0.0
        )
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, params.epochs // 3), gamma=0.1
        )
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@dataclass
class Stepper:
    """One optimisation step: forward (autocast on CUDA), loss, backward, clip, update."""

    model: torch.nn.Module
    family: str
    device: torch.device
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype
    grad_clip: float

    def step(self, images: Any, targets: Any) -> float:
        """Train on one batch; returns the loss (non-finite: nothing was updated)."""
        device = self.device
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            family_loss = family_part(self.family, "training").loss
            loss = family_loss(self.model, images, targets, self.loss_fn, device)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value
