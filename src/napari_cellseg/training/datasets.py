"""Torch datasets for training (random augmented crops) and validation (whole images).

:class:`CropDataset` draws every sample from its own RNG seeded by ``(seed, epoch, index)``,
so a sample is the same in any process and any worker order: training is reproducible and
resumes exactly. Crops are cut with a margin of context around the patch when augmenting, so
rotations and elastic deformations bring in real pixels rather than fill, and reflected
where they pass the image border (as inference pads images). With an ``object_diameter``,
each crop is cut at ``patch / scale`` pixels and resampled to the patch, so that the image's
objects come out near that diameter (:mod:`napari_cellseg.training.scale`).

An image may come with a region mask (:mod:`napari_cellseg.training.regions`): its crops are
then centred near the region, the region is cut, resampled and augmented with the labels,
and the family's target marks the pixels outside it as not to be learnt from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from skimage.measure import label as connected_components

from napari_cellseg.errors import CellsegError
from napari_cellseg.families import FAMILIES, family_part
from napari_cellseg.training.scale import (
    draw_scale,
    measure_diameter,
    nearest_index,
    resize_channels,
    scale_factor,
)

__all__ = ["CropDataset", "FullImageDataset", "collate_maskrcnn", "collate_unet"]

Item = tuple[np.ndarray, np.ndarray]
Crop = tuple[np.ndarray, np.ndarray, np.ndarray | None]
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

CONTEXT_FRACTION = 0.25
"""Context cut on each side of a patch before augmenting, as a fraction of the patch size."""


def _check_items(items: Sequence[Item]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(items) == 0:
        raise CellsegError("no training images: the dataset needs at least one image")
    images, labels = [], []
    for i, (image, instances) in enumerate(items):
        image, instances = np.asarray(image), np.asarray(instances)
        if image.ndim != 3 or instances.ndim != 2 or image.shape[1:] != instances.shape:
            raise CellsegError(
                f"training item {i}: need a (C, H, W) image and (H, W) labels of the same size, "
                f"got {image.shape} and {instances.shape}"
            )
        if instances.dtype.kind not in "biu":
            raise CellsegError(f"training item {i}: labels must be integers, not {instances.dtype}")
        images.append(np.asarray(image, np.float32))
        labels.append(instances)
    return images, labels


def _reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices into an axis of ``size``, reflected at both ends (``numpy.pad`` "reflect")."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


def _window_start(rng: np.random.Generator, centre: int | None, size: int, patch: int) -> int:
    """Top/left of a patch: random, or around ``centre``; inside the image when it fits."""
    low, high = min(0, size - patch), max(0, size - patch)
    if centre is None:
        return int(rng.integers(low, high + 1))
    return int(np.clip(centre - patch // 2, low, high))


class CropDataset(torch.utils.data.Dataset):
    """Random, augmented training crops with targets for a U-Net or a Mask R-CNN.

    Parameters
    ----------
    items : list of (numpy.ndarray, numpy.ndarray)
        ``(image, instances)``: float32 ``(C, H, W)`` network input (as from
        :func:`napari_cellseg.training.pairs.load_pair`) and integer ``(H, W)`` labels.
    family : str
        A family of :data:`napari_cellseg.families.FAMILIES`: its training part builds the
        targets.
    outputs : list of str
        The model card's outputs (U-Net target layout; ignored for Mask R-CNN).
    patch_size : int
        Side of the square crops.
    samples_per_epoch : int
        Length of the dataset.
    augment : callable or None
        ``augment(image, mask) -> (image, mask)`` on tensors, e.g. from
        :func:`napari_cellseg.training.augment.build_augmentation`; it gets the crop with
        :data:`CONTEXT_FRACTION` of context on each side, cut away afterwards.
    seed : int
        Seed of the sampling and augmentation.
    foreground_bias : float
        Probability that a crop is centred near a random object pixel (± a quarter patch)
        instead of placed uniformly.
    object_diameter : float or None
        Rescale every crop so the image's objects come out near this diameter (px);
        ``None`` or 0: crops at the images' own scale.
    scale_jitter : float
        With ``object_diameter``: each crop's zoom is also multiplied by a log-uniform
        factor in ``[1 / (1 + scale_jitter), 1 + scale_jitter]``.
    diameters : list of (float or None), optional
        Each image's measured object diameter (px, ``None``: no objects); measured here with
        :func:`~napari_cellseg.training.scale.measure_diameter` (once) when not given.
        Images without objects are not rescaled.
    regions : list of (numpy.ndarray or None), optional
        Each image's region mask (bool ``(H, W)``; ``None``: the whole image counts). An
        image with a region is drawn in proportion to the region's area, and each of its
        crops contains a region pixel (an object pixel inside the region with probability
        ``foreground_bias``); the region is cut and augmented with the labels and passed to
        the family's ``crop_target(..., region=...)``.

    Notes
    -----
    A sample: an image is chosen with probability proportional to its area, the crop is cut
    (reflecting past the border when the image is smaller than the patch; reflected copies of
    objects become separate objects; when rescaling, cut at ``1 / zoom`` of its size and
    resampled: image by area averaging or bilinear, labels by nearest neighbour), augmented,
    the labels relabelled 1..N, and the target
    built with :func:`~napari_cellseg.training.targets.unet_target` (computed on the crop with its
    context, so boundaries at the patch edge are right) or
    :func:`~napari_cellseg.training.targets.maskrcnn_target`.
    """

    def __init__(
        self,
        items: Sequence[Item],
        *,
        family: str,
        outputs: Sequence[str],
        patch_size: int,
        samples_per_epoch: int,
        augment: Augment | None,
        seed: int,
        foreground_bias: float = 0.7,
        object_diameter: float | None = None,
        scale_jitter: float = 0.0,
        diameters: Sequence[float | None] | None = None,
        regions: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise CellsegError(f"unknown model family {family!r}; use {' or '.join(FAMILIES)}")
        family_part(family, "training").check_outputs(outputs)
        if patch_size < 1 or samples_per_epoch < 1:
            raise CellsegError(
                f"patch size ({patch_size}) and samples per epoch ({samples_per_epoch}) must "
                "be at least 1"
            )
        if not 0.0 <= foreground_bias <= 1.0:
            raise CellsegError(f"foreground bias must be in [0, 1], got {foreground_bias}")
        self.images, self.labels = _check_items(items)
        self.family = family
        self.outputs = list(outputs)
        self.patch_size = int(patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.augment = augment
        self.seed = int(seed)
        self.foreground_bias = float(foreground_bias)
        self.epoch = 0
        self.margin = round(CONTEXT_FRACTION * patch_size) if augment is not None else 0
        self.regions = _check_regions(regions, self.labels)
        areas = np.array(
            [
                lab.size if r is None else np.count_nonzero(r)
                for lab, r in zip(self.labels, self.regions, strict=True)
            ],
            np.float64,
        )
        self._weights = areas / areas.sum()
        self.object_diameter = float(object_diameter) if object_diameter else None
        self.scale_jitter = float(scale_jitter)
        if diameters is None:
            diameters = [measure_diameter(lab) for lab in self.labels]
        if len(diameters) != len(self.labels):
            raise CellsegError(
                f"{len(diameters)} object diameters for {len(self.labels)} training images"
            )
        self.diameters = list(diameters)
        self.factors = [scale_factor(self.object_diameter, d) for d in self.diameters]

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: samples depend on ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"sample {index} out of range 0..{self.samples_per_epoch - 1}")
        entropy = [self.seed % 2**64, self.epoch % 2**64, int(index)]
        numpy_seq, torch_seq = np.random.SeedSequence(entropy).spawn(2)
        rng = np.random.default_rng(numpy_seq)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG state is left alone
            torch.default_generator.manual_seed(int(torch_seq.generate_state(1, np.uint64)[0]))
            return self._sample(rng)

    def _region_centre(
        self, rng: np.random.Generator, labels: np.ndarray, region: np.ndarray, jitter: int
    ) -> tuple[int, int]:
        """A crop centre within ``jitter`` of a region pixel (an object's: ``foreground_bias``).

        The window placed around it (clipped to the image) always contains that pixel.
        """
        candidates = np.flatnonzero(region & (labels > 0))
        if rng.random() >= self.foreground_bias or not candidates.size:
            candidates = np.flatnonzero(region)
        cy, cx = divmod(int(candidates[rng.integers(candidates.size)]), labels.shape[1])
        return cy + int(rng.integers(-jitter, jitter + 1)), cx + int(
            rng.integers(-jitter, jitter + 1)
        )

    def _cut(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The crop (patch plus context margin) of a random image, labels made unique."""
        return self._crop(rng)[:2]

    def _crop(self, rng: np.random.Generator) -> Crop:
        """As :meth:`_cut`, also returning the crop's region (``None``: the image has none)."""
        k = int(rng.choice(len(self.images), p=self._weights))
        image, labels, region = self.images[k], self.labels[k], self.regions[k]
        height, width = labels.shape
        zoom = 1.0
        if self.object_diameter is not None and self.diameters[k] is not None:
            zoom = draw_scale(rng, self.factors[k], self.scale_jitter)
        if zoom != 1.0:
            return self._cut_zoomed(rng, image, labels, region, zoom)
        cy = cx = None
        if region is not None:
            cy, cx = self._region_centre(rng, labels, region, self.patch_size // 4)
        elif rng.random() < self.foreground_bias:
            foreground = np.flatnonzero(labels)
            if foreground.size:
                cy, cx = divmod(int(foreground[rng.integers(foreground.size)]), width)
                jitter = self.patch_size // 4
                cy += int(rng.integers(-jitter, jitter + 1))
                cx += int(rng.integers(-jitter, jitter + 1))
        p, m = self.patch_size, self.margin
        y0 = _window_start(rng, cy, height, p) - m
        x0 = _window_start(rng, cx, width, p) - m
        side = p + 2 * m
        if y0 >= 0 and x0 >= 0 and y0 + side <= height and x0 + side <= width:
            window = (slice(y0, y0 + side), slice(x0, x0 + side))
            crop_region = None if region is None else region[window].copy()
            return (
                image[(slice(None), *window)].copy(),
                labels[window].astype(np.int64),
                crop_region,
            )
        rows = _reflect_index(np.arange(y0, y0 + side), height)
        cols = _reflect_index(np.arange(x0, x0 + side), width)
        crop_image = image[:, rows[:, None], cols[None, :]]
        # A reflected copy of an object has the same label: make every copy its own object.
        crop_labels = connected_components(labels[rows[:, None], cols[None, :]], background=0)
        crop_region = None if region is None else region[rows[:, None], cols[None, :]]
        return crop_image, crop_labels.astype(np.int64), crop_region

    def _cut_zoomed(
        self,
        rng: np.random.Generator,
        image: np.ndarray,
        labels: np.ndarray,
        region: np.ndarray | None,
        zoom: float,
    ) -> Crop:
        """As :meth:`_crop`, with a ``side / zoom`` source window resampled to ``side``."""
        height, width = labels.shape
        p, m = self.patch_size, self.margin
        side = p + 2 * m
        source_p = max(1, round(p / zoom))
        source_m = round(m / zoom)
        source_side = source_p + 2 * source_m
        cy = cx = None
        if region is not None:
            cy, cx = self._region_centre(rng, labels, region, source_p // 4)
        elif rng.random() < self.foreground_bias:
            foreground = np.flatnonzero(labels)
            if foreground.size:
                cy, cx = divmod(int(foreground[rng.integers(foreground.size)]), width)
                jitter = source_p // 4
                cy += int(rng.integers(-jitter, jitter + 1))
                cx += int(rng.integers(-jitter, jitter + 1))
        y0 = _window_start(rng, cy, height, source_p) - source_m
        x0 = _window_start(rng, cx, width, source_p) - source_m
        inside = y0 >= 0 and x0 >= 0 and y0 + source_side <= height and x0 + source_side <= width
        rows = _reflect_index(np.arange(y0, y0 + source_side), height)
        cols = _reflect_index(np.arange(x0, x0 + source_side), width)
        if inside:
            window = image[:, y0 : y0 + source_side, x0 : x0 + source_side]
        else:
            window = image[:, rows[:, None], cols[None, :]]
        crop_image = resize_channels(window, (side, side))
        pick = nearest_index(source_side, side)
        crop_labels = labels[rows[pick][:, None], cols[pick][None, :]]
        if not inside:  # reflected copies of an object become separate objects
            crop_labels = connected_components(crop_labels, background=0)
        crop_region = None if region is None else region[rows[pick][:, None], cols[pick][None, :]]
        return (
            np.ascontiguousarray(crop_image, np.float32),
            crop_labels.astype(np.int64),
            crop_region,
        )

    def _sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, Any]:
        crop_image, crop_labels, crop_region = self._crop(rng)
        image, labels = torch.from_numpy(crop_image), torch.from_numpy(crop_labels)
        region = None
        if crop_region is not None:
            region = torch.from_numpy(np.ascontiguousarray(crop_region, np.int64))
        if self.augment is not None and region is None:
            image, labels = self.augment(image, labels)
        elif self.augment is not None:
            # One mask carries labels and region (2 * label + in-region): the augmentation
            # resamples masks by nearest neighbour, so both move exactly together; its fill
            # (0) is outside the region.
            image, packed = self.augment(image, labels * 2 + region)
            labels, region = packed // 2, packed % 2
        m, p = self.margin, self.patch_size
        inner = (slice(m, m + p), slice(m, m + p))
        image = image[(slice(None), *inner)].to(torch.float32).contiguous()
        labels_np = np.ascontiguousarray(labels.numpy())
        part = family_part(self.family, "training")
        if region is None:
            return image, part.crop_target(labels_np, self.outputs, inner)
        region_np = np.ascontiguousarray(region.numpy() > 0)
        target = part.crop_target(labels_np, self.outputs, inner, region=region_np)
        if hasattr(part, "region_input"):  # e.g. Mask R-CNN: unchecked pixels blanked
            image = part.region_input(image, region_np[inner])
        return image, target


def _check_regions(
    regions: Sequence[np.ndarray | None] | None, labels: Sequence[np.ndarray]
) -> list[np.ndarray | None]:
    """Each image's region as a bool array of its size (``None``: the whole image counts)."""
    if regions is None:
        return [None] * len(labels)
    if len(regions) != len(labels):
        raise CellsegError(f"{len(regions)} region masks for {len(labels)} training images")
    out: list[np.ndarray | None] = []
    for i, (region, lab) in enumerate(zip(regions, labels, strict=True)):
        if region is None:
            out.append(None)
            continue
        region = np.asarray(region) > 0
        if region.shape != lab.shape:
            raise CellsegError(
                f"training item {i}: the region mask {region.shape} differs from the labels "
                f"{lab.shape}; give a (H, W) region of the image's size"
            )
        if not region.any():
            raise CellsegError(f"training item {i}: the region mask marks nothing")
        out.append(region)
    return out


def collate_unet(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Stack U-Net samples into ``(images (B, C, p, p), targets (B, ...))``."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(targets)


def collate_maskrcnn(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Mask R-CNN samples as ``(list of images, list of target dicts)``."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class FullImageDataset(torch.utils.data.Dataset):
    """Whole images for validation, without augmentation.

    Parameters
    ----------
    items : list of (numpy.ndarray, numpy.ndarray)
        ``(image, instances)`` as for :class:`CropDataset`.

    Each item is ``(image, instances)``: float32 ``(C, H, W)`` and int64 ``(H, W)`` tensors.
    """

    def __init__(self, items: Sequence[Item]) -> None:
        self.images, self.labels = _check_items(items)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index]))
        return image, torch.from_numpy(self.labels[index].astype(np.int64))
