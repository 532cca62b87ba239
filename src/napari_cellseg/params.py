"""Frozen dataclasses of every job's parameters: the one source of defaults.

The GUI builds its widgets from these fields, the CLI parses into them, and a Prediction
records the ones it used. Each user-facing field's label, help text and allowed values
live in its ``field(metadata=...)`` (:class:`~napari_cellseg.fields.FieldInfo`, read with
:func:`~napari_cellseg.fields.field_info`): the CLI help, the widgets' labels, tooltips and
ranges, and the dataclasses' range checks are all made from it.

>>> i = field_info(PostprocessParams, "prob_threshold")
>>> i.label, i.min, i.max, i.family
('Probability', 0.0, 1.0, 'unet')
>>> field_info(PredictParams, "tta").choices
(1, 2, 4, 8)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from napari_cellseg.block_options import BlockOptions  # noqa: F401  (re-exported)
from napari_cellseg.diameters import DIAMETER_HELP, DIAMETER_RANGE, parse_diameter
from napari_cellseg.errors import CellsegError
from napari_cellseg.families import FAMILIES, family_spec
from napari_cellseg.fields import (  # noqa: F401  (re-exported: callers read metadata here)
    FieldInfo,
    check_fields,
    described_fields,
    field_info,
    info,
)


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

    prob_threshold: float = field(default=0.5, metadata=info(
        "Probability", "U-Net: a pixel belongs to an object above this foreground probability",
        min=0.0, max=1.0, family="unet"))  # fmt: skip
    boundary_threshold: float = field(default=0.5, metadata=info(
        "Boundary", "U-Net (3 outputs): watershed seeds are pixels with P(boundary) below this",
        min=0.0, max=1.0, family="unet"))  # fmt: skip
    min_distance: int = field(default=3, metadata=info(
        "Min. distance", "U-Net (1/2 outputs): minimum distance between seeds, px",
        min=1, family="unet", error="{name} must be >= {min} pixel, got {value}"))  # fmt: skip
    score_threshold: float = field(default=0.5, metadata=info(
        "Score", "Mask R-CNN: objects scored below this are dropped",
        min=0.0, max=1.0, family="maskrcnn"))  # fmt: skip
    mask_threshold: float = field(default=0.5, metadata=info(
        "Mask", "Mask R-CNN: mask probability above which a pixel is inside the object",
        min=0.0, max=1.0, family="maskrcnn"))  # fmt: skip
    nms_iou: float = field(default=0.5, metadata=info(
        "NMS IoU",
        "Mask R-CNN: an object overlapping a higher-scored one by more than this mask IoU "
        "is dropped",
        min=0.0, max=1.0, family="maskrcnn"))  # fmt: skip
    max_detections: int = field(default=2000, metadata=info(
        "Max. objects", "Mask R-CNN: at most this many objects per image (highest scores kept)",
        min=1, family="maskrcnn"))  # fmt: skip
    min_size: int = field(default=10, metadata=info(
        "Min. size", "objects smaller than this many pixels are removed",
        min=0, error="{name} must be >= {min} pixels, got {value}"))  # fmt: skip
    fill_holes: bool = field(default=True, metadata=info("Fill holes", "fill holes inside objects"))

    def __post_init__(self) -> None:
        check_fields(self)


DEVICE_HELP = "auto (cuda > mps > cpu), cuda, cuda:N, mps or cpu"
"""The devices a ``device`` parameter takes."""

DEFAULT_OVERLAP = 64
"""Tile overlap in pixels for tiles of 256 pixels and more (see :func:`default_overlap`)."""

TTA_CHOICES = (1, 2, 4, 8)
"""Copies of each tile test-time augmentation can average (1 = off); see ``PredictParams.tta``."""

BACKENDS = ("auto", "torch", "onnx", "int8", "bf16")  # PredictParams.backend
INVERT_HELP = (
    "flip intensities (1 - x after normalisation): dark objects on a bright background "
    "for a model of bright ones on a dark background, e.g. brightfield for a fluorescence model"
)


@dataclass(frozen=True)
class PredictParams:
    """Everything :func:`napari_cellseg.inference.iter_predict` needs but the image and model.

    Attributes
    ----------
    device : str
        ``auto`` (cuda > mps > cpu), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
    tile_size : int
        Tile edge in pixels (a U-Net's padded to what its encoder needs).
    overlap : int or None
        Overlap between neighbouring tiles in pixels; ``None``: :func:`default_overlap`
        for this tile size (resolved on construction: always an int afterwards).
    batch_size : int
        Tiles per forward pass on a GPU; see ``inference.model_runner.tiles_per_pass``.
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
        each tile, this many in all (1 = off; 2, 4 or 8: as many times the network time);
        U-Net probabilities averaged, Mask R-CNN detections matched and averaged.
    diameter : float, str or None
        Typical object diameter (:func:`parse_diameter`): ``None`` the model's default
        (card ``default_diameter``, else ``"auto"`` with ``object_diameter``, else off),
        ``"auto"`` (estimated from the image), ``"off"``, pixels, or ``"12um"``
        (micrometres, needs the image's pixel size). The image is rescaled by
        ``card.reference_diameter() / diameter`` and the labels brought back.
    post : PostprocessParams or None
        Thresholds and sizes for labels; ``None`` (default): the model's own (its card's,
        from ``cellseg tune``), else the library's, resolved once the model is known.
    stitch_3d, link_time, stitch_iou, max_gap, z_spacing
        Z-stacks: join each plane's objects into 3D objects; time-lapses: give each object
        one id over the movie, missing for at most ``max_gap`` frames
        (:mod:`napari_cellseg.labels.stitching`). ``stitch_iou``: least IoU of a match;
        ``z_spacing``: z step / xy pixel size (``None``: 1, or the TIFF's, or the layer's).
    backend : str
        What runs the network on the CPU (:data:`BACKENDS`; the field's help and
        :mod:`napari_cellseg.inference.onnx_backend` say more).
    invert : bool
        Flip the image's intensities for the model (see ``INVERT_HELP``).
    compile : bool
        ``torch.compile`` the PyTorch network (``inference.model_runner``; ONNX Runtime
        ignores it); where it fails, eager with a notice.
    """

    device: str = field(default="auto", metadata=info("Device", DEVICE_HELP))
    tile_size: int = field(default=512, metadata=info(
        "Tile size", "tile edge in pixels (smaller tiles use less memory)",
        min=32, max=8192,
        error="tile size {value} is out of range: use {min} to {max} pixels "
        "(512 or 1024 suit most GPUs)"))  # fmt: skip
    overlap: int | None = field(default=DEFAULT_OVERLAP, metadata=info(
        "Overlap", f"overlap between tiles in pixels (default {DEFAULT_OVERLAP}, or a quarter of a "
        "smaller tile; must be below half the tile)"))  # fmt: skip
    batch_size: int = field(default=4, metadata=info(
        "Batch size", "tiles per pass on a GPU; on the CPU one, or small ones up to 512² px",
        min=1, max=256,
        error="batch size must be between {min} and {max}, got {value}"))  # fmt: skip
    axes: str | None = field(default=None, metadata=info(
        "Axes", "axes of the images in the order the file stores them, e.g. ZYX or CYX "
        "(default: what the file says)"))  # fmt: skip
    channels: tuple[int, ...] | None = field(default=None, metadata=info(
        "Channels", "image channels fed to the model, e.g. 0 or 1,0,2"))  # fmt: skip
    invert: bool = field(default=False, metadata=info("Invert", INVERT_HELP))
    keep_probabilities: bool = False
    mixed_precision: bool = True
    tta: int = field(default=1, metadata=info(
        "Augment", "test-time augmentation: also run the model on flipped/rotated copies of each "
        "tile, 2, 4 or 8 in all, and average them (U-Net: probabilities; Mask R-CNN: "
        "matched objects); as many times slower; 1 = off",
        choices=TTA_CHOICES,
        error="test-time augmentation takes {choices} copies of each tile (1 = off), "
        "got {value}"))  # fmt: skip
    diameter: float | str | None = field(default=None, metadata=info("Diameter", DIAMETER_HELP))
    post: PostprocessParams | None = None
    stitch_3d: bool = field(default=False, metadata=info(
        "Stitch 3D", "z-stacks: join objects of neighbouring planes into 3D objects"))  # fmt: skip
    link_time: bool = field(default=False, metadata=info(
        "Link over time", "time-lapses: an object keeps its id from frame to frame"))  # fmt: skip
    stitch_iou: float = field(default=0.25, metadata=info(
        "Match IoU", "least overlap (IoU) of an object with itself in the next plane or frame",
        min=0.0, max=1.0, min_exclusive=True))  # fmt: skip
    max_gap: int = field(default=2, metadata=info(
        "Max. gap", "frames an object may be missing yet keep its id", min=0, max=999))  # fmt: skip
    z_spacing: float | None = field(default=None, metadata=info(
        "Z spacing", "distance between z planes in xy pixels, z step / pixel size (default: "
        "from the TIFF file or the layer's scale, else 1)",
        min=0.0, min_exclusive=True))  # fmt: skip
    backend: str = field(default="auto", metadata=info(
        "Backend", "the CPU's network runner: onnx (ONNX Runtime, U-Nets), torch; int8 (U-Nets "
        "in 8-bit integers) and bf16 (PyTorch in bfloat16, CPUs with its instructions) are "
        "faster, labels close to float32's; auto: onnx if there", choices=BACKENDS))  # fmt: skip
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "diameter", parse_diameter(self.diameter))
        if self.overlap is None:
            object.__setattr__(self, "overlap", default_overlap(self.tile_size))
        check_fields(self)
        if not 0 <= self.overlap < self.tile_size // 2:  # the one bound that follows another
            raise CellsegError(
                f"overlap {self.overlap} must be between 0 and half the tile size "
                f"({self.tile_size // 2 - 1} for tiles of {self.tile_size})"
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
    """The default tile overlap, reduced for small tiles (a quarter of the tile at most).

    ``PredictParams(overlap=None)`` resolves to this; callers need not compute it.

    >>> default_overlap(512), default_overlap(128)
    (64, 32)
    >>> PredictParams(tile_size=128, overlap=None).overlap
    32
    """
    return min(DEFAULT_OVERLAP, max(0, int(tile_size) // 4))


def describe_post(values: Mapping[str, Any]) -> str:
    """Post-processing values as ``"name value, ..."``, sorted by name (for messages)."""
    return ", ".join(f"{name} {value:g}" for name, value in sorted(values.items()))


#: Fine-tuning a trained model starts from this fraction of the family's learning rate: the
#: full rate wrecks a converged model in a few steps on a handful of corrected images.
FINE_TUNE_LR_FACTOR = 0.1


def fine_tune_learning_rate(family: str) -> float:
    """The default learning rate when fine-tuning a model of ``family``."""
    return float(family_spec(family).train_defaults["learning_rate"]) * FINE_TUNE_LR_FACTOR


#: The object diameter (px) new training rescales its images to (``TrainParams.object_diameter``
#: ``None`` when not fine-tuning): a little above the DSB 2018 median (18 px), so small nuclei
#: keep a few pixels more.
DEFAULT_TRAIN_DIAMETER = 20.0
#: Object diameters (px) training accepts: those a model card takes.
TRAIN_DIAMETER_RANGE = DIAMETER_RANGE


@dataclass(frozen=True)
class TrainParams:
    """Parameters of :func:`napari_cellseg.training.loop.iter_train`.

    ``None`` means "the family's default" (``FamilySpec.train_defaults``): U-Net AdamW 1e-3 with
    a cosine schedule; Mask R-CNN SGD 0.005, momentum 0.9, weight decay 5e-4, step decay.
    ``freeze_batchnorm=None`` freezes BatchNorm statistics when fine-tuning (a few corrected
    images in batches of 2 would otherwise drag them away from what the model learnt) and
    updates them when training from scratch. ``tune_thresholds`` chooses the saved model's
    post-processing thresholds on the validation images at the end
    (:mod:`napari_cellseg.training.tuning`) and stores them in its card.

    ``object_diameter`` (px) normalises object size (:mod:`napari_cellseg.training.scale`):
    each image's median equivalent object diameter is measured from its mask and every crop
    (and validation image) is rescaled so its objects come out near this size, times a random
    log-uniform factor in ``[1 / (1 + scale_jitter), 1 + scale_jitter]`` for crops. ``None``
    (the default): :data:`DEFAULT_TRAIN_DIAMETER` for new training, the base model's
    (``ModelCard.reference_diameter()``) when fine-tuning; training resolves it, so cards and
    checkpoints hold the number. ``0``: off, crops at the images' own scale (the recipe before
    object sizes). Otherwise 2 to 500 px.

    ``recipe`` names the recipe the values came from (``fast``: the fine-tuning default,
    built by :func:`napari_cellseg.training.recipes.recipe_params`); ``adapt_batchnorm``,
    ``encoder_lr_factor``, ``warmup_steps``, ``foreground_bias``, ``ema_decay``: its mechanisms.
    ``invert`` flips the training images and goes into the card (the model's predictions
    invert by themselves); ``None`` (the default) lets a fine-tune choose from the images
    (:mod:`napari_cellseg.training.auto_invert`), and is off otherwise.
    """

    family: str = "unet"
    builder_args: dict[str, Any] | None = None
    epochs: int = field(default=30, metadata=info(
        "Epochs", "training epochs (passes of samples-per-epoch crops)",
        min=1, error="epochs must be at least {min}, got {value}"))  # fmt: skip
    minutes: float | None = field(default=None, metadata=info(
        "Minutes", "time budget in minutes (instead of a number of epochs)",
        min=0.0, min_exclusive=True,
        error="the time budget must be positive, got {value} minutes"))  # fmt: skip
    batch_size: int = field(default=8, metadata=info(
        "Batch size", "training crops per step (at most samples per epoch)",
        min=1, error="batch size {value} must be >= 1 and <= samples per epoch "
        "({p.samples_per_epoch})"))  # fmt: skip
    patch_size: int = field(default=256, metadata=info(
        "Patch size", "edge of the training crops in pixels, a multiple of 32",
        min=32, max=4096,
        error="patch size {value} must be a multiple of 32 between {min} and {max}"))  # fmt: skip
    samples_per_epoch: int = field(default=512, metadata=info(
        "Crops per epoch", "random training crops per epoch",
        min=1, error="samples per epoch must be at least {min}, got {value}"))  # fmt: skip
    optimizer: str | None = field(default=None, metadata=info(
        "Optimizer", "adamw or sgd (default: the family's)", choices=("adamw", "sgd")))  # fmt: skip
    learning_rate: float | None = field(default=None, metadata=info(
        "Learning rate", "learning rate (default: the family's)",
        min=0.0, max=10.0, min_exclusive=True, max_exclusive=True,
        error="learning rate must be positive and small, got {value}"))  # fmt: skip
    weight_decay: float | None = None
    schedule: str | None = None
    loss: str = field(default="dice+ce", metadata=info(
        "Loss", "training loss: dice+ce, dice+focal, ce or focal",
        choices=("dice+ce", "dice+focal", "ce", "focal")))  # fmt: skip
    augment: bool = True
    val_fraction: float = field(default=0.15, metadata=info(
        "Validation share",
        "share of the images held out for validation (when no --val folder is given)",
        min=0.0, max=1.0, max_exclusive=True,
        error="validation fraction must be in [0, 1), got {value}"))  # fmt: skip
    seed: int = field(default=0, metadata=info("Seed", "random seed of the split and crops"))
    device: str = field(default="auto", metadata=info("Device", DEVICE_HELP))
    mixed_precision: bool = True
    grad_clip: float = 5.0
    early_stopping_patience: int | None = field(default=10, metadata=info(
        "Patience", "early stopping patience in epochs"))  # fmt: skip
    num_workers: int = field(default=0, metadata=info("Workers", "data loader workers"))
    val_tile_size: int = 512
    freeze_batchnorm: bool | None = None
    tune_thresholds: bool = field(default=False, metadata=info(
        "Tune thresholds",
        "at the end, choose the model's thresholds on the validation images (DSB AP) "
        "and store them in its card"))  # fmt: skip
    object_diameter: float | None = field(default=None, metadata=info(
        "Object diameter",
        f"object diameter in px that training rescales every image's objects to (measured "
        f"from its masks; default {DEFAULT_TRAIN_DIAMETER:g}, or the base model's with an "
        "initial model; 0 or none = off: the images' own scale)",
        min=0.0, max=TRAIN_DIAMETER_RANGE[1],
        error="object diameter must be 0 (off) or between "
        f"{TRAIN_DIAMETER_RANGE[0]:g} and {{max}} px, got {{value}}"))  # fmt: skip
    scale_jitter: float = field(default=0.2, metadata=info(
        "Scale jitter", "random zoom around the object diameter: a log-uniform factor in "
        "[1/(1+j), 1+j] per crop (0 = none)", min=0.0, max=1.0))  # fmt: skip

    recipe: str = field(default="classic", metadata=info(
        "Recipe", "fast: adapt to a few corrected images in minutes; classic: long runs",
        choices=("fast", "classic")))  # fmt: skip
    adapt_batchnorm: bool = False  # AdaBN: re-estimate BatchNorm statistics on the data first
    invert: bool | None = field(default=None, metadata=info("Invert", INVERT_HELP))  # in the card
    encoder_lr_factor: float = field(default=1.0, metadata=info(
        "Encoder LR factor", "the encoder's learning rate as a fraction of the rest's",
        min=0.0, max=1.0))  # fmt: skip
    warmup_steps: int = field(default=0, metadata=info(
        "Warm-up steps", "steps of linear learning-rate warm-up", min=0))  # fmt: skip
    foreground_bias: float = field(default=0.7, metadata=info(
        "Foreground bias", "share of crops centred near an object", min=0.0, max=1.0))  # fmt: skip
    ema_decay: float = field(default=0.0, metadata=info(
        "Weight averaging", "per-step decay of the weights' moving average, which is validated "
        "and saved (0 = off: the raw weights)", min=0.0, max=1.0, max_exclusive=True))  # fmt: skip

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            known = " or ".join(FAMILIES)
            raise CellsegError(f"unknown model family {self.family!r}; use {known}")
        check_fields(self)
        if self.samples_per_epoch < self.batch_size:  # the one bound that follows another
            raise CellsegError(field_info(self, "batch_size").problem(self.batch_size, self))
        if self.patch_size % 32:
            raise CellsegError(field_info(self, "patch_size").problem(self.patch_size, self))
        if self.object_diameter is not None and 0 < self.object_diameter < TRAIN_DIAMETER_RANGE[0]:
            info_ = field_info(self, "object_diameter")
            raise CellsegError(info_.problem(self.object_diameter, self))
        if self.schedule not in (None, "cosine", "step", "constant"):
            raise CellsegError(f"schedule must be cosine, step or constant, got {self.schedule!r}")

    def resolved(self, name: str) -> Any:
        """The value of ``name``, with the family default when it is None."""
        value = getattr(self, name)
        return family_spec(self.family).train_defaults[name] if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """Plain data, defaults resolved (stored in checkpoints and model cards)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in family_spec(self.family).train_defaults:
            out[name] = self.resolved(name)
        return out
