"""Frozen dataclasses of every job's parameters: the one source of defaults.

The GUI builds its widgets from these fields, the CLI parses into them, and a Prediction
records the ones it used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from napari_cellseg.errors import CellsegError


@dataclass(frozen=True)
class PostprocessParams:
    """Turning network output into instance labels (cheap to re-apply).

    Attributes
    ----------
    prob_threshold : float
        U-Net: a pixel is foreground when P(foreground) (1 - P(background) for 3-class
        models) exceeds this.
    boundary_threshold : float
        U-Net 3-class: watershed markers are pixels with P(interior) > prob_threshold and
        P(boundary) < boundary_threshold.
    min_distance : int
        U-Net 1/2-class: minimum distance between distance-transform peaks (markers).
    score_threshold : float
        Mask R-CNN: detections below this score are dropped.
    mask_threshold : float
        Mask R-CNN: mask probability above which a pixel belongs to the object.
    nms_iou : float
        Mask R-CNN: detections overlapping a higher-scored one by more than this mask IoU
        are dropped.
    max_detections : int
        Mask R-CNN: at most this many objects per image (highest scores kept).
    min_size : int
        Objects smaller than this many pixels are removed (both families).
    fill_holes : bool
        Fill holes inside each object.
    """

    prob_threshold: float = 0.5
    boundary_threshold: float = 0.5
    min_distance: int = 3
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 2000
    min_size: int = 10
    fill_holes: bool = True

    def __post_init__(self) -> None:
        for name in (
            "prob_threshold",
            "boundary_threshold",
            "score_threshold",
            "mask_threshold",
            "nms_iou",
        ):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise CellsegError(f"{name} must be between 0 and 1, got {value}")
        if self.min_size < 0:
            raise CellsegError(f"min_size must be >= 0 pixels, got {self.min_size}")
        if self.max_detections < 1:
            raise CellsegError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.min_distance < 1:
            raise CellsegError(f"min_distance must be >= 1 pixel, got {self.min_distance}")


TTA_CHOICES = (1, 2, 4, 8)
"""Copies of each tile test-time augmentation can average (1 = off); see ``PredictParams.tta``."""


@dataclass(frozen=True)
class PredictParams:
    """Everything :func:`~napari_cellseg.inference.planes.iter_predict` needs but image and model.

    Attributes
    ----------
    device : str
        ``auto`` (cuda > mps > cpu), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
    tile_size : int
        Tile edge in pixels (U-Net tiles are padded to a multiple of 32).
    overlap : int
        Overlap between neighbouring tiles in pixels.
    batch_size : int
        Tiles per forward pass.
    axes : str or None
        Axes of the input (letters from ``TZCYXS``); ``None`` guesses from the shape.
    channels : tuple of int or None
        Image channels mapped, in order, onto the model's input channels; ``None`` uses the
        card's channel handling.
    keep_probabilities : bool
        Also return the probability map (U-Net) / mask probabilities.
    mixed_precision : bool
        Use bfloat16/float16 autocast on CUDA.
    tta : int
        Test-time augmentation: the network also runs on flipped and transposed copies of
        each tile, this many in all (1 = off; 2, 4 or 8), which costs as many times the
        network time. A U-Net's probabilities are averaged; a Mask R-CNN's detections are
        matched across the copies and averaged (``core.detection_tta``).
    post : PostprocessParams or None
        Thresholds and sizes for turning output into labels. ``None`` (the default): the
        model's own values (``ModelCard.postprocess``, chosen by ``cellseg tune``), then the
        library defaults; inference resolves it once the model is known.
    """

    device: str = "auto"
    tile_size: int = 512
    overlap: int = 64
    batch_size: int = 4
    axes: str | None = None
    channels: tuple[int, ...] | None = None
    keep_probabilities: bool = False
    mixed_precision: bool = True
    tta: int = 1
    post: PostprocessParams | None = None

    def __post_init__(self) -> None:
        if not 32 <= self.tile_size <= 8192:
            raise CellsegError(
                f"tile size {self.tile_size} is out of range: use 32 to 8192 pixels "
                "(512 or 1024 suit most GPUs)"
            )
        if not 0 <= self.overlap < self.tile_size // 2:
            raise CellsegError(
                f"overlap {self.overlap} must be between 0 and half the tile size "
                f"({self.tile_size // 2 - 1} for tiles of {self.tile_size})"
            )
        if not 1 <= self.batch_size <= 256:
            raise CellsegError(f"batch size must be between 1 and 256, got {self.batch_size}")
        if self.tta not in TTA_CHOICES:
            raise CellsegError(
                f"test-time augmentation takes {', '.join(map(str, TTA_CHOICES))} copies of "
                f"each tile (1 = off), got {self.tta}"
            )
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if any(c < 0 for c in self.channels):
                raise CellsegError(f"channel indices must be >= 0, got {self.channels}")

    def with_post(self, **changes: Any) -> PredictParams:
        """A copy with some post-processing parameters changed (from the defaults if unset)."""
        return replace(self, post=replace(self.post or PostprocessParams(), **changes))

    def resolved(self, own: PostprocessParams) -> PredictParams:
        """This, with ``own`` (the model's values) as ``post`` when none was given."""
        return self if self.post is not None else replace(self, post=own)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for manifests and JSON); ``post`` is ``None`` when unset."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "post"}
        post = self.post
        out["post"] = (
            None if post is None else {f.name: getattr(post, f.name) for f in fields(post)}
        )
        return out


def default_overlap(tile_size: int) -> int:
    """The default tile overlap, reduced for small tiles (a quarter of the tile at most)."""
    return min(PredictParams().overlap, max(0, tile_size // 4))


def describe_post(values: Mapping[str, Any]) -> str:
    """Post-processing values as ``"name value, ..."``, sorted by name (for messages)."""
    return ", ".join(f"{name} {value:g}" for name, value in sorted(values.items()))


#: Family defaults used when TrainParams leaves a value as None.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
    },
    "maskrcnn": {
        "optimizer": "sgd",
        "learning_rate": 0.005,
        "weight_decay": 5e-4,
        "schedule": "step",
    },
}


#: Fine-tuning a trained model starts from this fraction of the family's learning rate: the
#: full rate wrecks a converged model in a few steps on a handful of corrected images.
FINE_TUNE_LR_FACTOR = 0.1


def fine_tune_learning_rate(family: str) -> float:
    """The default learning rate when fine-tuning a model of ``family``."""
    return float(TRAIN_DEFAULTS[family]["learning_rate"]) * FINE_TUNE_LR_FACTOR


@dataclass(frozen=True)
class TrainParams:
    """Parameters of :func:`napari_cellseg.training.loop.iter_train`.

    ``None`` means "the family's default" (see :data:`TRAIN_DEFAULTS`): U-Net AdamW 1e-3 with
    a cosine schedule; Mask R-CNN SGD 0.005, momentum 0.9, weight decay 5e-4, step decay.
    ``freeze_batchnorm=None`` freezes BatchNorm statistics when fine-tuning (a few corrected
    images in batches of 2 would otherwise drag them away from what the model learnt) and
    updates them when training from scratch. ``tune_thresholds`` chooses the saved model's
    post-processing thresholds on the validation images at the end
    (:mod:`napari_cellseg.training.tuning`) and stores them in its card.
    """

    family: str = "unet"
    builder_args: dict[str, Any] | None = None
    epochs: int = 30
    minutes: float | None = None
    batch_size: int = 8
    patch_size: int = 256
    samples_per_epoch: int = 512
    optimizer: str | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    loss: str = "dice+ce"
    augment: bool = True
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    grad_clip: float = 5.0
    early_stopping_patience: int | None = 10
    num_workers: int = 0
    val_tile_size: int = 512
    freeze_batchnorm: bool | None = None
    tune_thresholds: bool = False

    def __post_init__(self) -> None:
        if self.family not in TRAIN_DEFAULTS:
            raise CellsegError(f"unknown model family {self.family!r}; use unet or maskrcnn")
        if self.epochs < 1:
            raise CellsegError(f"epochs must be at least 1, got {self.epochs}")
        if self.minutes is not None and self.minutes <= 0:
            raise CellsegError(f"the time budget must be positive, got {self.minutes} minutes")
        if self.samples_per_epoch < 1:
            raise CellsegError(
                f"samples per epoch must be at least 1, got {self.samples_per_epoch}"
            )
        if self.batch_size < 1 or self.samples_per_epoch < self.batch_size:
            raise CellsegError(
                f"batch size {self.batch_size} must be >= 1 and <= samples per epoch "
                f"({self.samples_per_epoch})"
            )
        if not 32 <= self.patch_size <= 4096 or self.patch_size % 32:
            raise CellsegError(
                f"patch size {self.patch_size} must be a multiple of 32 between 32 and 4096"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise CellsegError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in (None, "adamw", "sgd"):
            raise CellsegError(f"optimizer must be adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in (None, "cosine", "step", "constant"):
            raise CellsegError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.loss not in ("dice+ce", "dice+focal", "ce", "focal"):
            raise CellsegError(f"loss must be dice+ce, dice+focal, ce or focal, got {self.loss!r}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 10:
            raise CellsegError(
                f"learning rate must be positive and small, got {self.learning_rate}"
            )

    def resolved(self, name: str) -> Any:
        """The value of ``name``, with the family default when it is None."""
        value = getattr(self, name)
        return TRAIN_DEFAULTS[self.family][name] if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """Plain data, defaults resolved (stored in checkpoints and model cards)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in TRAIN_DEFAULTS[self.family]:
            out[name] = self.resolved(name)
        return out


@dataclass(frozen=True)
class BlockOptions:
    """Segmenting planes too large for memory block by block (batch, CLI, viewer).

    Attributes
    ----------
    block_size : int
        Edge of a block in pixels, 64 to 32768.
    halo : int
        Margin read around each block, 0 to ``block_size``; objects larger than the halo
        may be cut.
    block_pixels : int
        Planes with more pixels than this (default 4096 x 4096) go block by block.

    Examples
    --------
    >>> BlockOptions(block_size=1024, halo=128).block_pixels
    16777216
    >>> BlockOptions(block_size=32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_cellseg.errors.CellsegError: block size 32 and halo 256 are out of range: ...
    """

    block_size: int = 2048
    halo: int = 256
    block_pixels: int = 1 << 24

    def __post_init__(self) -> None:
        from numbers import Integral

        values = (self.block_size, self.halo, self.block_pixels)
        if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
            raise CellsegError(
                f"block size, halo and block pixels must be whole numbers, got {values}"
            )
        if not 64 <= self.block_size <= 32768 or not 0 <= self.halo <= self.block_size:
            raise CellsegError(
                f"block size {self.block_size} and halo {self.halo} are out of range: use a "
                "block of 64 to 32768 pixels and a halo from 0 to the block size"
            )
        if self.block_pixels < 1:
            raise CellsegError(f"block pixels must be at least 1, got {self.block_pixels}")
