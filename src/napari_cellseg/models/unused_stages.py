"""Encoder stages a shallow U-Net never runs: not held in memory, still in its state dict.

smp builds every stage of a ResNet-style encoder whatever ``encoder_depth`` says, and runs
only the first ``depth``: at depth 4 a ResNet's ``layer4`` is built, initialised, loaded and
kept, but never called. For the demo U-Net (ResNet-18, depth 4) that stage holds 8.4 M of
its 12.0 M parameters (32 MiB in float32). :func:`drop_unused_stages` replaces those stages
by parameter-free placeholders, so a loaded model no longer holds them (nor does training
see them), while its state dict keeps every key smp expects:

- ``state_dict()`` lists the dropped stages' tensors as zeros of their shape (they are never
  used, so any value gives the same outputs; each is one zero expanded, so listing them costs
  no memory), so a saved file or a bioimage.io export still loads into
  ``smp.Unet(**kwargs)`` with ``strict=True``;
- ``load_state_dict()`` skips the dropped stages' keys, so files written before (with the
  stages' real values) or by plain smp load as they did.

Only smp's ResNet-style encoders (``ResNetEncoder``: resnet, resnext, ...) are handled,
whose stage ``layer<k>`` runs from depth ``k + 1`` on; other encoders are left whole.
"""

from __future__ import annotations

from typing import Any

import torch

#: smp's encoders built by its ``ResNetEncoder`` (smp 0.6), which halve their input once per
#: stage, ``encoder_depth`` times: known by name so that tile sizes can be chosen from a model
#: card without importing smp (``tests/models/test_unused_stages.py`` holds it to smp's
#: registry).
RESNET_STYLE_ENCODERS = frozenset(
    [f"resnet{n}" for n in (18, 34, 50, 101, 152)]
    + ["resnext50_32x4d"]
    + [f"resnext101_32x{n}d" for n in (4, 8, 16, 32, 48)]
)
#: Attribute of the encoder holding the dropped tensors' names (below the encoder), shapes
#: and dtypes; read by the state-dict hooks.
DROPPED_ATTR = "_cellseg_dropped"


def unused_stage_names(encoder: torch.nn.Module, depth: int) -> list[str]:
    """The names of ``encoder``'s stages that ``depth`` never runs (ResNet-style only).

    >>> import segmentation_models_pytorch as smp
    >>> with torch.device("meta"):
    ...     encoder = smp.encoders.get_encoder("resnet18", depth=3, weights=None)
    >>> unused_stage_names(encoder, 3)
    ['layer3', 'layer4']
    """
    from segmentation_models_pytorch.encoders.resnet import ResNetEncoder

    if not isinstance(encoder, ResNetEncoder):
        return []
    return [f"layer{k}" for k in range(max(1, depth), 5) if hasattr(encoder, f"layer{k}")]


def drop_unused_stages(encoder: torch.nn.Module, depth: int) -> int:
    """Replace the stages ``depth`` never runs by placeholders; the parameters dropped.

    The encoder's outputs are unchanged; its state dict keeps the dropped keys (as zeros)
    and loading skips them (see the module docstring).

    Examples
    --------
    >>> import segmentation_models_pytorch as smp
    >>> encoder = smp.encoders.get_encoder("resnet18", depth=4, weights=None)
    >>> drop_unused_stages(encoder, 4)
    8393728
    >>> encoder.layer4
    Identity()
    >>> tuple(encoder.state_dict()["layer4.0.conv1.weight"].shape)
    (512, 256, 3, 3)
    >>> float(encoder.state_dict()["layer4.0.conv1.weight"].abs().sum())
    0.0
    """
    names = unused_stage_names(encoder, depth)
    if not names:
        return 0
    dropped: dict[str, tuple[tuple[int, ...], torch.dtype]] = dict(
        getattr(encoder, DROPPED_ATTR, {})
    )
    count = 0
    for name in names:
        stage = getattr(encoder, name)
        for key, tensor in stage.state_dict().items():
            dropped[f"{name}.{key}"] = (tuple(tensor.shape), tensor.dtype)
        count += sum(p.numel() for p in stage.parameters())
        setattr(encoder, name, torch.nn.Identity())
    if not hasattr(encoder, DROPPED_ATTR):
        encoder.register_state_dict_post_hook(_add_dropped)
        encoder.register_load_state_dict_pre_hook(_skip_dropped)
    setattr(encoder, DROPPED_ATTR, dropped)
    return count


def placeholder_keys(model: torch.nn.Module) -> set[str]:
    """The state-dict keys of ``model`` that stand for dropped stages (zeros, never run).

    Copying weights between two differently built models should skip them: they carry no
    trained values.

    >>> import segmentation_models_pytorch as smp
    >>> model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=4,
    ...                  decoder_channels=[64, 32, 16, 8])
    >>> _ = drop_unused_stages(model.encoder, 4)
    >>> keys = placeholder_keys(model)
    >>> "encoder.layer4.0.conv1.weight" in keys, "encoder.layer3.0.conv1.weight" in keys
    (True, False)
    """
    return {
        f"{name}.{key}" if name else key
        for name, module in model.named_modules()
        for key in getattr(module, DROPPED_ATTR, {})
    }


def _reference(encoder: torch.nn.Module) -> torch.Tensor | None:
    return next((p for p in encoder.parameters() if p.is_floating_point()), None)


def _add_dropped(
    module: torch.nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    """State-dict post-hook: the dropped tensors as zeros (floating point ones in the
    encoder's current dtype and device), each a view of a single zero."""
    reference = _reference(module)
    device = reference.device if reference is not None else torch.device("cpu")
    for key, (shape, dtype) in getattr(module, DROPPED_ATTR, {}).items():
        if dtype.is_floating_point and reference is not None:
            dtype = reference.dtype
        # one zero seen at every position: no memory until a caller copies it
        state_dict[prefix + key] = torch.zeros((), dtype=dtype, device=device).expand(shape)


def _skip_dropped(
    module: torch.nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any
) -> None:
    """Load-state-dict pre-hook: forget the dropped stages' keys (unused, never loaded)."""
    for key in getattr(module, DROPPED_ATTR, {}):
        state_dict.pop(prefix + key, None)
