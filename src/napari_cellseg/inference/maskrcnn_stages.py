"""The Mask R-CNN's stages run one by one (``ModelRunner.maskrcnn_detections``).

torchvision's ``model(images)`` shrinks large tiles to the model's ``min_size``, runs the mask
head on every candidate down to its lowest score and pastes every 28×28 mask into a
full-tile float image. Run stage by stage instead: tiles keep their scale (:func:`unshrunk`),
the mask head runs only on the candidates that can still pass (:class:`MaskChoice`,
:func:`roi_heads`), and each mask is resized into its own box (:func:`box_detections`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from napari_cellseg.inference.detections import Detections

__all__ = ["MaskChoice", "box_detections", "integer_boxes", "roi_heads", "unshrunk"]


def unshrunk(transform: Any, sizes: list[tuple[int, int]]) -> Any:
    """A copy of torchvision's transform that never shrinks these tiles.

    torchvision resizes each image so that its short side is ``min_size`` (and its long side
    at most ``max_size``); ``min_size`` and ``max_size`` are raised to the tiles' own sides,
    so tiles larger than the model's ``min_size`` keep their scale, and smaller ones are
    enlarged as before. A copy: the cached model is shared between threads.

    >>> from torchvision.models.detection.transform import GeneralizedRCNNTransform
    >>> t = GeneralizedRCNNTransform(256, 1024, [0.0] * 3, [1.0] * 3)
    >>> u = unshrunk(t, [(512, 480)])
    >>> u.min_size, u.max_size, t.min_size
    ((480,), 1024, (256,))
    """
    import copy

    short = min(min(size) for size in sizes)
    longest = max(max(size) for size in sizes)
    floor = min(int(v) for v in transform.min_size)
    if short <= floor and longest <= transform.max_size:
        return transform
    unshrunk = copy.copy(transform)
    unshrunk.min_size = (max(floor, short),)
    unshrunk.max_size = max(int(transform.max_size), longest)
    return unshrunk


class MaskChoice:
    """Which candidates of each image get a mask (see ``ModelRunner.mask_regions``)."""

    def __init__(self, min_score: float, regions: list[list], resized: list, sizes: list):
        self.min_score, self.regions, self.resized, self.sizes = min_score, regions, resized, sizes

    def __call__(self, index: int, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        from torchvision.models.detection.transform import resize_boxes

        keep = scores >= self.min_score
        if not self.regions[index] or bool(keep.all()):
            return keep
        b = resize_boxes(boxes.float(), self.resized[index], self.sizes[index]).cpu().numpy()
        y0, x0, y1, x1 = integer_boxes(b, self.sizes[index])
        meets = np.zeros(len(b), bool)
        for ry0, rx0, ry1, rx1 in self.regions[index]:  # as tile_merge picks its "near" ones
            meets |= (y0 < ry1) & (x0 < rx1) & (y1 > ry0) & (x1 > rx0)
        return keep | torch.from_numpy(meets).to(keep.device)


def roi_heads(heads: Any, features: Any, proposals: list, images: Any, choice: MaskChoice):
    """``heads(features, proposals, sizes)[0]`` in eval mode, with masks only for the
    candidates ``choice`` keeps (the others are left out).

    The boxes and scores are torchvision's, so the candidates kept are exactly those a full
    pass gives (score filtering, NMS and the top-k keep the better ones whatever the worse
    ones are); only the mask head, most of the cost, runs on fewer.
    """
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    if choice.min_score <= 0 or not heads.has_mask() or heads.has_keypoint():
        return heads(features, proposals, images.image_sizes)[0]
    sizes = images.image_sizes
    box_features = heads.box_head(heads.box_roi_pool(features, proposals, sizes))
    class_logits, box_regression = heads.box_predictor(box_features)
    boxes, scores, labels = heads.postprocess_detections(
        class_logits, box_regression, proposals, sizes
    )
    keep = [choice(i, b, s) for i, (b, s) in enumerate(zip(boxes, scores, strict=True))]
    boxes, scores, labels = (
        [t[k] for t, k in zip(ts, keep, strict=True)] for ts in (boxes, scores, labels)
    )
    mask_features = heads.mask_head(heads.mask_roi_pool(features, boxes, sizes))
    masks = maskrcnn_inference(heads.mask_predictor(mask_features), labels)
    return [
        {"boxes": b, "scores": s, "labels": lab, "masks": m}
        for b, s, lab, m in zip(boxes, scores, labels, masks, strict=True)
    ]


def integer_boxes(b: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """``y0, x0, y1, x1`` integer boxes of (N, 4) ``x0, y0, x1, y1`` floats, in the tile."""
    h, w = shape
    x0 = np.clip(np.floor(b[:, 0]), 0, w - 1).astype(np.int64)
    y0 = np.clip(np.floor(b[:, 1]), 0, h - 1).astype(np.int64)
    x1 = np.clip(np.ceil(b[:, 2]), x0 + 1, w).astype(np.int64)
    y1 = np.clip(np.ceil(b[:, 3]), y0 + 1, h).astype(np.int64)
    return y0, x0, y1, x1


def box_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    shape: tuple[int, int],
) -> Detections:
    """Integer boxes clipped to the tile, each mask resized into its own box only."""
    import torch.nn.functional as F

    if len(boxes) == 0:
        return Detections()
    b = boxes.cpu().numpy()
    y0, x0, y1, x1 = integer_boxes(b, shape)
    crops = []
    for i in range(len(b)):
        size = (int(y1[i] - y0[i]), int(x1[i] - x0[i]))
        crop = F.interpolate(
            masks[i : i + 1].float(), size=size, mode="bilinear", align_corners=False
        )
        crops.append(crop[0, 0].cpu().numpy().astype(np.float32, copy=False))
    return Detections(
        np.stack([y0, x0, y1, x1], axis=1),
        scores.float().cpu().numpy(),
        labels.cpu().numpy(),
        crops,
    )
