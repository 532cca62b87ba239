"""U-Net builder: segmentation-models-pytorch ``Unet`` with any smp encoder."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import torch

from napari_cellseg.errors import ModelBuildError
from napari_cellseg.models._local_weights import load_local_weights, offline_message
from napari_cellseg.models.registry import register_model

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def smp_encoder_names() -> list[str]:
    """Encoder names smp knows (timm encoders are also accepted with the ``tu-`` prefix)."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def _check_encoder_name(encoder_name: str) -> None:
    if encoder_name.startswith("tu-"):
        return
    names = smp_encoder_names()
    if encoder_name not in names:
        close = difflib.get_close_matches(encoder_name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelBuildError(
            f"unknown U-Net encoder {encoder_name!r}{hint} "
            f"(smp encoders such as resnet18, resnet34, efficientnet-b0, or 'tu-<timm name>')"
        )


@register_model("unet")
def build_unet(
    *,
    encoder_name: str = "resnet34",
    in_channels: int = 3,
    classes: int = 3,
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    decoder_attention_type: str | None = None,
    decoder_use_norm: bool | str = "batchnorm",
    encoder_weights: str | Path | None = None,
) -> torch.nn.Module:
    """Build an smp U-Net.

    Parameters
    ----------
    encoder_name : str
        Any smp encoder (``resnet18``, ``resnet34``, ``efficientnet-b0``, ``tu-<timm>``...).
    in_channels : int
        Number of input channels of the first convolution.
    classes : int
        Output channels (heads). Our convention: 3 = background / interior / boundary
        (softmax); 2 = background / foreground (softmax); 1 = foreground (sigmoid).
    encoder_depth : int
        Number of encoder stages (3 to 5); ``decoder_channels`` must have that length.
    decoder_channels : sequence of int
        Channels of each decoder block.
    decoder_attention_type : str or None
        ``None`` or ``"scse"``.
    decoder_use_norm : bool or str
        Normalisation in the decoder blocks (smp's ``decoder_use_norm``).
    encoder_weights : str, Path or None
        A *local* file with encoder weights; ``None`` initialises randomly. Names such as
        ``"imagenet"`` are refused because they would need a download.

    Returns
    -------
    torch.nn.Module
        The U-Net, producing ``classes`` logit maps the size of its input.

    Examples
    --------
    >>> model = build_unet(encoder_name="resnet18", in_channels=1, classes=3)
    >>> model(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 3, 64, 64])
    """
    import segmentation_models_pytorch as smp

    _check_encoder_name(encoder_name)
    if in_channels < 1:
        raise ModelBuildError(f"in_channels must be at least 1, got {in_channels}")
    if classes < 1:
        raise ModelBuildError(f"classes must be at least 1, got {classes}")
    decoder_channels = tuple(int(c) for c in decoder_channels)
    if len(decoder_channels) != encoder_depth:
        raise ModelBuildError(
            f"decoder_channels has {len(decoder_channels)} entries but encoder_depth is "
            f"{encoder_depth}; give one channel count per decoder block"
        )
    local_file = None
    if encoder_weights is not None:
        if isinstance(encoder_weights, Path) or Path(str(encoder_weights)).suffix:
            local_file = Path(encoder_weights)
        else:
            raise ModelBuildError(offline_message("encoder_weights", encoder_weights))
    model = smp.Unet(
        encoder_name=encoder_name,
        encoder_depth=encoder_depth,
        encoder_weights=None,
        decoder_use_norm=decoder_use_norm,
        decoder_channels=decoder_channels,
        decoder_attention_type=decoder_attention_type,
        in_channels=in_channels,
        classes=classes,
    )
    if local_file is not None:
        load_local_weights(model.encoder, local_file, what="encoder_weights")
    return model
