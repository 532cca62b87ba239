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
        foreground_bias=params.foreground_bias,
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


def parameter_groups(model: torch.nn.Module, params: TrainParams) -> list[dict[str, Any]]:
    """The trainable parameters as optimiser groups: the rest first, then the encoder.

    With ``params.encoder_lr_factor`` below 1 and a family that names its encoder
    (``ENCODER_PREFIX`` in its training part), the encoder gets its own group at that
    fraction of the learning rate; otherwise there is one group.
    """
    lr = params.resolved("learning_rate")
    prefix = getattr(family_part(params.family, "training"), "ENCODER_PREFIX", None)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if prefix is None or params.encoder_lr_factor >= 1.0:
        return [{"params": [p for _, p in named], "lr": lr}]
    encoder = [p for n, p in named if n.startswith(prefix)]
    rest = [p for n, p in named if not n.startswith(prefix)]
    groups = [{"params": rest, "lr": lr}]
    if encoder:
        groups.append({"params": encoder, "lr": lr * params.encoder_lr_factor})
    return groups


def make_optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the trainable parameters, as ``params`` say."""
    groups = parameter_groups(model, params)
    lr, wd = params.resolved("learning_rate"), params.resolved("weight_decay")
    if params.resolved("optimizer") == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)


def warmup_cosine(step: int, warmup: int, total_steps: int, elapsed_fraction: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0 by step or by time.

    Progress is the larger of ``step / total_steps`` and ``elapsed_fraction`` (the share of
    a time budget used), so a run with a budget in minutes still ends at a small rate.

    Examples
    --------
    >>> [round(warmup_cosine(s, 4, 100), 3) for s in (0, 2, 4)]
    [0.2, 0.6, 1.0]
    >>> round(warmup_cosine(50, 0, 100), 3), round(warmup_cosine(10, 0, 100, 0.5), 3)
    (0.5, 0.5)
    """
    if step < warmup:
        return (step + 1) / (warmup + 1) if warmup else 1.0
    progress = max((step - warmup) / max(1, total_steps - warmup), elapsed_fraction)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_scheduler(optimizer, params: TrainParams, steps_per_epoch: int):
    """The learning-rate schedule: cosine (per step), step decay or constant (per epoch).

    With ``params.warmup_steps`` or a time budget, cosine becomes :func:`warmup_cosine`:
    linear warm-up, then decay over the epochs or the minutes, whichever ends first.
    """
    schedule = params.resolved("schedule")
    total = max(1, params.epochs * steps_per_epoch)
    if schedule == "cosine" and (params.warmup_steps or params.recipe == "fast"):
        import time

        started, budget = time.perf_counter(), (params.minutes or 0.0) * 60.0

        def factor(step: int) -> float:
            elapsed = (time.perf_counter() - started) / budget if budget else 0.0
            return warmup_cosine(step, params.warmup_steps, total, elapsed)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
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
