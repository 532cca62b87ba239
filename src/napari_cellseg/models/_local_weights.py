"""Loading encoder/backbone weights from a file the user names (never from the internet)."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_cellseg.errors import ModelBuildError


def offline_message(what: str, value: object) -> str:
    """The message given when a builder is asked for weights it would have to download."""
    return (
        f"{what}={value!r} would download weights from the internet, and napari-cellseg never "
        "downloads anything. Pass the path of a local weight file you already have "
        f"(.pth/.pt/.safetensors), or {what}=None for random initialisation."
    )


def load_local_weights(module: torch.nn.Module, path: str | Path, *, what: str) -> list[str]:
    """Load a local state-dict file into ``module`` (non-strict on classifier heads).

    Returns the keys of ``module`` that the file did not provide (e.g. a classifier ``fc``
    the detection backbone does not have). Raises :class:`ModelBuildError` when the file is
    missing or when nothing in it matches.
    """
    from napari_cellseg.models.state_dict_io import read_state_dict

    path = Path(path)
    if not path.exists():
        raise ModelBuildError(f"{what} file {path} does not exist; {offline_message(what, path)}")
    state, _meta, _source = read_state_dict(path)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not usable:
        raise ModelBuildError(
            f"{path}: none of its {len(state)} tensors fit the {what.replace('_', ' ')} "
            f"(expected keys like {', '.join(list(own)[:3])})"
        )
    module.load_state_dict(usable, strict=False)
    return [k for k in own if k not in usable]
