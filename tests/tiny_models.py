"""The tiny, randomly initialised models the tests use (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

TINY_UNET = {
    "encoder_name": "resnet18",
    "in_channels": 3,
    "classes": 3,
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}
TINY_MASKRCNN = {
    "backbone": "resnet18",
    "fpn_channels": 32,
    "returned_layers": [1, 2],
    "box_head_size": 64,
    "mask_hidden_channels": 32,
    "anchor_sizes": [[8], [16], [32]],
    "min_size": 128,
    "max_size": 128,
    "detections_per_img": 40,
}


def tiny_train_params(family: str = "unet", **kw):
    """``TrainParams`` of 2 quick CPU epochs of the tiny ``family`` model; ``kw`` win."""
    from napari_cellseg.params import TrainParams

    base = {
        "family": family,
        "builder_args": TINY_UNET if family == "unet" else TINY_MASKRCNN,
        "epochs": 2,
        "batch_size": 2,
        "patch_size": 64 if family == "unet" else 128,
        "samples_per_epoch": 4,
        "val_fraction": 0.34,
        "device": "cpu",
        "seed": 3,
    }
    return TrainParams(**{**base, **kw})


def save_tiny(family: str, path: Path, *, seed: int = 0) -> Path:
    """Build the tiny model of ``family`` with a fixed seed and save it with its card."""
    import torch

    from napari_cellseg.models import ModelCard, build_model, save_weights

    torch.manual_seed(seed)
    args = TINY_UNET if family == "unet" else TINY_MASKRCNN
    return save_weights(build_model(family, **args), ModelCard.for_model(family, args), path)


def save_tiny_learned(path: Path, way: str = "bright", n: int = 6, manifest=None) -> Path:
    """The tiny U-Net (seed 0) whose card says it learned ``n`` training images of polarity
    ``way`` (``models/polarity.py``), or the given data ``manifest``."""
    import torch

    from napari_cellseg.models import ModelCard, build_model, save_weights

    torch.manual_seed(0)
    if manifest is None:
        manifest = [{"name": f"i{k}", "role": "train", "polarity": way} for k in range(n)]
    card = ModelCard.for_model("unet", TINY_UNET, provenance={"data_manifest": manifest})
    return save_weights(build_model("unet", **TINY_UNET), card, path)


def sample_folder(root: Path, *names: str) -> Path:
    """A training folder at ``root`` (``images/``, ``masks/``) holding copies of the named
    sample images (``dsb_brightfield``, ``dsb_he``, ``dsb_fluorescence``) and their masks."""
    import shutil

    from napari_cellseg.io.samples import sample_data_dir

    for sub, ext in (("images", ".png"), ("masks", ".tif")):
        (root / sub).mkdir(parents=True)
        for name in names:
            shutil.copy(sample_data_dir() / sub / f"{name}{ext}", root / sub / f"{name}{ext}")
    return root
