"""Joint image + instance-mask augmentation with :mod:`torchvision.transforms.v2`.

The image is wrapped as a :class:`torchvision.tv_tensors.Image` and the mask as a
:class:`torchvision.tv_tensors.Mask`, so every geometric step moves both together and the
mask is resampled with nearest-neighbour interpolation (labels are never blended), while the
intensity steps touch the image only. All randomness comes from torch's global RNG, so a
sample is reproducible given the RNG state (the training dataset seeds it per item).

The steps, in order, and their settings at ``strength="default"`` are listed in
:data:`AUGMENTATIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from napari_cellseg.errors import CellsegError

__all__ = [
    "AUGMENTATIONS",
    "HED_FROM_RGB",
    "RGB_FROM_HED",
    "STRENGTHS",
    "Augmentation",
    "build_augmentation",
    "hed_to_rgb",
    "rgb_to_hed",
]

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

AUGMENTATIONS: dict[str, str] = {
    "flip": "horizontal and vertical flips, each with p = 0.5 (exact)",
    "rot90": "rotation by k x 90 degrees, k uniform in 0..3 (0 or 2 for non-square; exact)",
    "affine": "p = 0.5: rotation +-45 deg, scale 0.8-1.25, shear +-5 deg; bilinear image, "
    "nearest mask, fill 0",
    "elastic": "p = 0.3: smooth random displacement (bicubic from a 48-pixel control grid, "
    "2.5 px standard deviation); bilinear image, nearest mask",
    "stain": "RGB histology only, p = 0.5: H&E stain jitter in Ruifrok HED optical-density "
    "space, each stain scaled by U(0.95, 1.05) and shifted by U(-0.05, 0.05)",
    "brightness": "p = 0.5: add U(-0.1, 0.1) x the image's value range",
    "contrast": "p = 0.5: scale around the mean by a log-uniform factor in 0.75-1.33",
    "gamma": "p = 0.5: gamma log-uniform in 0.7-1.43 on the image rescaled to [0, 1]",
    "blur": "p = 0.2: Gaussian blur, sigma 0.1-1.2 px",
    "noise": "p = 0.3: additive Gaussian noise, sigma U(0, 0.05) x the value range",
}
"""Augmentation steps in the order they run, with their ``"default"`` settings."""


@dataclass(frozen=True)
class _Settings:
    affine_p: float
    degrees: float
    scale: tuple[float, float]
    shear: float
    elastic_p: float
    elastic_px: float
    elastic_spacing: int
    stain_p: float
    stain_scale: float
    stain_shift: float
    intensity_p: float
    brightness: float
    contrast: float
    gamma: float
    blur_p: float
    blur_sigma: tuple[float, float]
    noise_p: float
    noise_std: float


_STRENGTH_SETTINGS = {
    "light": _Settings(
        0.3, 20.0, (0.9, 1.11), 3.0, 0.15, 1.5, 48, 0.3, 0.025, 0.025,
        0.3, 0.05, 1.15, 1.2, 0.1, (0.1, 0.8), 0.2, 0.03,
    ),
    "default": _Settings(
        0.5, 45.0, (0.8, 1.25), 5.0, 0.3, 2.5, 48, 0.5, 0.05, 0.05,
        0.5, 0.1, 1.33, 1.43, 0.2, (0.1, 1.2), 0.3, 0.05,
    ),
    "strong": _Settings(
        0.7, 45.0, (0.7, 1.43), 10.0, 0.5, 4.0, 48, 0.7, 0.1, 0.1,
        0.7, 0.2, 1.67, 1.67, 0.3, (0.1, 2.0), 0.4, 0.08,
    ),
}  # fmt: skip

STRENGTHS: tuple[str, ...] = tuple(_STRENGTH_SETTINGS)
"""Accepted values of ``build_augmentation(strength=...)``."""

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), as skimage.color.
RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
"""Optical density of each stain (rows) in R, G, B; as ``skimage.color.rgb_from_hed``."""
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
"""Inverse of :data:`RGB_FROM_HED`; as ``skimage.color.hed_from_rgb``."""

_OD_FLOOR = 1e-6


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """Stain optical densities of an RGB image (Ruifrok colour deconvolution).

    Parameters
    ----------
    rgb : torch.Tensor
        ``(3, H, W)`` float, values in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(3, H, W)`` haematoxylin, eosin and DAB optical densities (natural log, not
        clipped). ``skimage.color.rgb2hed`` returns these divided by ``-log(1e-6)`` and
        clipped at 0.
    """
    od = -torch.log(rgb.clamp(min=_OD_FLOOR))
    return torch.einsum("chw,cd->dhw", od, HED_FROM_RGB.to(rgb.dtype))


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed`: RGB in [0, 1] from stain optical densities."""
    od = torch.einsum("dhw,dc->chw", hed, RGB_FROM_HED.to(hed.dtype))
    return torch.exp(-od).clamp(0.0, 1.0)


def _value_range(image: torch.Tensor) -> tuple[float, float]:
    return float(image.min()), float(image.max())


def _uniform(low: float, high: float, size: Sequence[int] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(tuple(size))


def _log_uniform(factor: float) -> float:
    """A factor in [1 / factor, factor], uniform in log scale."""
    return math.exp(float(_uniform(-math.log(factor), math.log(factor))))


class _RandomRot90:
    """Rotate image and mask by the same random multiple of 90 degrees (exact)."""

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        square = image.shape[-1] == image.shape[-2]
        k = int(torch.randint(0, 4 if square else 2, ())) * (1 if square else 2)
        if k == 0:
            return image, mask
        rotated = [tv_tensors.wrap(torch.rot90(t, k, (-2, -1)), like=t) for t in (image, mask)]
        return rotated[0], rotated[1]


class _RandomElastic:
    """Smooth elastic deformation from a coarse random control grid (bicubic upsampling)."""

    def __init__(self, p: float, magnitude_px: float, spacing_px: int) -> None:
        self.p, self.magnitude_px, self.spacing_px = p, magnitude_px, spacing_px

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if float(torch.rand(())) >= self.p:
            return image, mask
        h, w = image.shape[-2:]
        grid = (
            max(2, math.ceil(h / self.spacing_px) + 1),
            max(2, math.ceil(w / self.spacing_px) + 1),
        )
        coarse = torch.randn(1, 2, *grid) * self.magnitude_px
        disp = torch.nn.functional.interpolate(
            coarse, size=(h, w), mode="bicubic", align_corners=True
        )
        disp = disp * torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)  # pixels -> grid units
        disp = disp.permute(0, 2, 3, 1).contiguous()  # (1, H, W, 2) with (x, y) last
        image = F.elastic(image, disp, interpolation=v2.InterpolationMode.BILINEAR, fill=0)
        return image, F.elastic(mask, disp, fill=0)  # masks: nearest neighbour


class _ImageStep:
    """Base of the intensity steps: applied with probability ``p`` to the image only."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if float(torch.rand(())) >= self.p:
            return image, mask
        lo, hi = _value_range(image)
        if not hi > lo:
            return image, mask
        out = self.apply(image.as_subclass(torch.Tensor), lo, hi)
        return tv_tensors.wrap(out, like=image), mask

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        raise NotImplementedError


class _StainJitter(_ImageStep):
    """Scale and shift each stain in HED optical-density space (RGB images only)."""

    def __init__(self, p: float, scale: float, shift: float) -> None:
        super().__init__(p)
        self.scale, self.shift = scale, shift

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        alpha = _uniform(1.0 - self.scale, 1.0 + self.scale, (3, 1, 1))
        beta = _uniform(-self.shift, self.shift, (3, 1, 1))
        if image.shape[0] != 3:
            return image
        rgb = (image - lo) / (hi - lo)  # one range for all channels keeps the colours
        hed = rgb_to_hed(rgb) * alpha.to(image.dtype) + beta.to(image.dtype)
        return hed_to_rgb(hed) * (hi - lo) + lo


class _Brightness(_ImageStep):
    def __init__(self, p: float, amount: float) -> None:
        super().__init__(p)
        self.amount = amount

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return image + float(_uniform(-self.amount, self.amount)) * (hi - lo)


class _Contrast(_ImageStep):
    def __init__(self, p: float, factor: float) -> None:
        super().__init__(p)
        self.factor = factor

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        mean = image.mean()
        return (image - mean) * _log_uniform(self.factor) + mean


class _Gamma(_ImageStep):
    def __init__(self, p: float, factor: float) -> None:
        super().__init__(p)
        self.factor = factor

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        unit = ((image - lo) / (hi - lo)).clamp(0.0, 1.0)
        return unit.pow(_log_uniform(self.factor)) * (hi - lo) + lo


class _GaussianNoise(_ImageStep):
    def __init__(self, p: float, std: float) -> None:
        super().__init__(p)
        self.std = std

    def apply(self, image: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        sigma = float(_uniform(0.0, self.std)) * (hi - lo)
        return image + torch.randn(image.shape, dtype=image.dtype) * sigma


class Augmentation:
    """A joint image + mask augmentation pipeline (see :func:`build_augmentation`).

    Call it with a float ``(C, H, W)`` image and an integer ``(H, W)`` mask; it returns the
    augmented float32 image and int64 mask as plain tensors. Inputs are not modified.

    Attributes
    ----------
    names : tuple of str
        Names of the steps, in order (keys of :data:`AUGMENTATIONS`).
    """

    def __init__(self, steps: Sequence[tuple[str, Step]]) -> None:
        self.steps = tuple(steps)
        self._pipeline = v2.Compose([step for _, step in self.steps])

    @property
    def names(self) -> tuple[str, ...]:
        """Step names in order."""
        return tuple(dict.fromkeys(name for name, _ in self.steps))

    def __repr__(self) -> str:
        return f"Augmentation({', '.join(self.names)})"

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or not image.is_floating_point():
            raise CellsegError(
                f"augmentation needs a float (C, H, W) image, got {tuple(image.shape)} "
                f"{image.dtype}"
            )
        if mask.shape != image.shape[-2:] or mask.is_floating_point():
            raise CellsegError(
                f"augmentation needs an integer (H, W) mask of the image's size "
                f"{tuple(image.shape[-2:])}, got {tuple(mask.shape)} {mask.dtype}"
            )
        img = tv_tensors.Image(image.to(torch.float32))
        msk = tv_tensors.Mask(mask.to(torch.int64))
        out_img, out_msk = self._pipeline(img, msk)
        out_img = out_img.as_subclass(torch.Tensor).to(torch.float32).contiguous()
        return out_img, out_msk.as_subclass(torch.Tensor).contiguous()


def build_augmentation(*, rgb_histology: bool, strength: str = "default") -> Augmentation:
    """Build the training augmentation.

    Parameters
    ----------
    rgb_histology : bool
        Whether the images are RGB histology (H&E): adds the stain jitter step.
    strength : str
        ``"light"``, ``"default"`` or ``"strong"``: probabilities and ranges of every step
        (``"default"`` is described in :data:`AUGMENTATIONS`).

    Returns
    -------
    Augmentation
        ``augment(image, mask) -> (image, mask)`` for a float ``(C, H, W)`` tensor and an
        integer ``(H, W)`` tensor; deterministic given torch's global RNG state.

    Examples
    --------
    >>> augment = build_augmentation(rgb_histology=False)
    >>> augment.names
    ('flip', 'rot90', 'affine', 'elastic', 'brightness', 'contrast', 'gamma', 'blur', 'noise')
    >>> image, mask = augment(torch.zeros(1, 32, 32), torch.zeros(32, 32, dtype=torch.int64))
    >>> tuple(image.shape), mask.dtype
    ((1, 32, 32), torch.int64)
    """
    if strength not in _STRENGTH_SETTINGS:
        raise CellsegError(
            f"unknown augmentation strength {strength!r}; use {', '.join(STRENGTHS)}"
        )
    s = _STRENGTH_SETTINGS[strength]
    blur_kernel = 2 * math.ceil(3 * s.blur_sigma[1]) + 1
    steps: list[tuple[str, Step]] = [
        ("flip", v2.RandomHorizontalFlip(p=0.5)),
        ("flip", v2.RandomVerticalFlip(p=0.5)),
        ("rot90", _RandomRot90()),
        (
            "affine",
            v2.RandomApply(
                [
                    v2.RandomAffine(
                        degrees=s.degrees,
                        scale=s.scale,
                        shear=(-s.shear, s.shear, -s.shear, s.shear),
                        interpolation=v2.InterpolationMode.BILINEAR,
                        fill={tv_tensors.Image: 0.0, tv_tensors.Mask: 0},
                    )
                ],
                p=s.affine_p,
            ),
        ),
        ("elastic", _RandomElastic(s.elastic_p, s.elastic_px, s.elastic_spacing)),
    ]
    if rgb_histology:
        steps.append(("stain", _StainJitter(s.stain_p, s.stain_scale, s.stain_shift)))
    steps += [
        ("brightness", _Brightness(s.intensity_p, s.brightness)),
        ("contrast", _Contrast(s.intensity_p, s.contrast)),
        ("gamma", _Gamma(s.intensity_p, s.gamma)),
        (
            "blur",
            v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=s.blur_sigma)], p=s.blur_p),
        ),
        ("noise", _GaussianNoise(s.noise_p, s.noise_std)),
    ]
    return Augmentation(steps)
