"""The U-Net family's models part: smp ``Unet`` builder, card conventions, foreign-file reading.

The builder is segmentation-models-pytorch's ``Unet`` with any smp encoder; the card
conventions say what its output channels mean; :func:`infer_builder_args` reads the
architecture of a bare smp U-Net state dict.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence, Set
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import ModelBuildError, WeightFileError
from napari_cellseg.models._local_weights import load_local_weights, offline_message
from napari_cellseg.models.architecture import block_indices, expected_keys
from napari_cellseg.models.state_dict_io import StateDict
from napari_cellseg.models.unused_stages import drop_unused_stages

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)
EXPECTED_KEYS = "an smp U-Net (encoder.*, decoder.blocks.*, segmentation_head.0.weight)"
"""The keys of a U-Net state dict, as error messages name them."""
_OUTPUTS = {
    1: (["foreground"], "sigmoid"),
    2: (["background", "foreground"], "softmax"),
    3: (["background", "interior", "boundary"], "softmax"),
}


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
        The U-Net, producing ``classes`` logit maps the size of its input. Encoder stages
        that ``encoder_depth`` never runs are not kept (their state-dict keys are: see
        :mod:`napari_cellseg.models.unused_stages`).

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
    drop_unused_stages(model.encoder, encoder_depth)
    return model


# -- card conventions ----------------------------------------------------------------------
def default_outputs(builder_args: dict[str, Any]) -> tuple[list[str], str | None]:
    """What each output channel means, and its activation: ``classes`` 1, 2 or 3 as documented
    in :func:`build_unet`, else ``class_0``... with softmax."""
    classes = int(builder_args.get("classes", 3))
    names, activation = _OUTPUTS.get(classes, ([f"class_{i}" for i in range(classes)], "softmax"))
    return list(names), activation


def input_channels(builder_args: dict[str, Any]) -> int:
    """The channels the network takes (``in_channels``)."""
    return int(builder_args.get("in_channels", 3))


def architecture(builder_args: dict[str, Any]) -> str:
    """Short architecture name: the encoder, e.g. ``resnet34``."""
    return str(builder_args.get("encoder_name", "resnet34"))


# -- foreign files -------------------------------------------------------------------------
def claims_state_dict(keys: Set[str]) -> bool:
    """Whether a bare state dict with ``keys`` looks like an smp U-Net."""
    return "segmentation_head.0.weight" in keys and any(k.startswith("encoder.") for k in keys)


def infer_builder_args(state: StateDict, path: str | Path) -> dict[str, Any]:
    """The builder arguments of an smp U-Net state dict (encoder matched by its shapes)."""
    keys = list(state)
    blocks = block_indices(keys, "decoder.blocks.")
    if not blocks:
        raise WeightFileError(
            path, f"unknown architecture: U-Net without decoder blocks; expected {expected_keys()}"
        )
    decoder_channels = []
    for i in blocks:
        weight = state.get(f"decoder.blocks.{i}.conv1.0.weight")
        if weight is None:
            raise WeightFileError(
                path,
                f"unknown architecture: expected decoder.blocks.{i}.conv1.0.weight in an smp U-Net",
            )
        decoder_channels.append(int(weight.shape[0]))
    stem = next((v for k, v in state.items() if k.startswith("encoder.") and v.ndim == 4), None)
    if stem is None:
        raise WeightFileError(path, "unknown architecture: U-Net encoder without convolutions")
    args: dict[str, Any] = {
        "in_channels": int(stem.shape[1]),
        "classes": int(state["segmentation_head.0.weight"].shape[0]),
        "encoder_depth": len(blocks),
        "decoder_channels": decoder_channels,
        "decoder_attention_type": "scse" if any(".attention1." in k for k in keys) else None,
        "decoder_use_norm": "batchnorm"
        if "decoder.blocks.0.conv1.1.running_mean" in state
        else ("batchnorm" if "decoder.blocks.0.conv1.1.weight" in state else False),
    }
    args["encoder_name"] = _match_smp_encoder(state, args["in_channels"], len(blocks), path)
    return args


def _match_smp_encoder(state: StateDict, in_channels: int, depth: int, path: str | Path) -> str:
    """Find the smp encoder whose parameter names and shapes equal the file's."""
    import warnings

    import segmentation_models_pytorch as smp

    wanted = {
        k[len("encoder.") :]: tuple(v.shape) for k, v in state.items() if k.startswith("encoder.")
    }
    for name in smp.encoders.get_encoder_names():
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                encoder = smp.encoders.get_encoder(
                    name, in_channels=in_channels, depth=depth, weights=None
                )
        except Exception:  # some encoders cannot be built for this depth / on meta
            continue
        own = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
        if own == wanted:
            return name
    first = ", ".join(f"encoder.{k}" for k in list(wanted)[:3])
    raise WeightFileError(
        path,
        "unknown architecture: a U-Net whose encoder matches none of smp's encoders "
        f"(keys like {first}); save it with smp's save_pretrained or as a napari-cellseg "
        "weight file so its card names the encoder",
    )
