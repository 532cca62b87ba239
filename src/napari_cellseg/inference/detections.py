"""A container for instance detections (Mask R-CNN output) in image coordinates.

Masks are stored cropped to each object's integer bounding box, so thousands of objects on
a large image cost memory proportional to the objects, not to the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """N detected objects.

    Attributes
    ----------
    boxes : np.ndarray
        (N, 4) int64 boxes ``(y0, x0, y1, x1)``, half-open, in image pixels.
    scores : np.ndarray
        (N,) float32 confidence.
    classes : np.ndarray
        (N,) int64 class index (1 = first object class; 0 is background and never stored).
    masks : list of np.ndarray
        N float32 mask probabilities, each of shape ``(y1 - y0, x1 - x0)``.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    masks: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.int64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        n = len(self.boxes)
        if not (len(self.scores) == len(self.classes) == len(self.masks) == n):
            raise ValueError("boxes, scores, classes and masks must have the same length")
        for box, mask in zip(self.boxes, self.masks, strict=True):
            if mask.shape != (box[2] - box[0], box[3] - box[1]):
                raise ValueError(f"mask shape {mask.shape} does not match box {box.tolist()}")

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index: np.ndarray | list[int]) -> Detections:
        """A subset (by integer indices or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.classes[index],
            [self.masks[i] for i in index],
        )

    def shifted(self, dy: int, dx: int) -> Detections:
        """The same objects with boxes moved by ``(dy, dx)`` (tile → image coordinates)."""
        return Detections(
            self.boxes + np.array([dy, dx, dy, dx]),
            self.scores.copy(),
            self.classes.copy(),
            list(self.masks),
        )

    @staticmethod
    def concatenate(parts: list[Detections]) -> Detections:
        """All objects of ``parts`` in one container."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections()
        return Detections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.classes for p in parts]),
            [m for p in parts for m in p.masks],
        )
