"""Importing a bioimage.io model package (zip or folder) as a ready U-Net with a model card.

Accepted: ``pytorch_state_dict`` weights whose architecture is
``segmentation_models_pytorch.Unet`` (or our ``build_unet``) with keyword arguments, read
with ``torch.load(weights_only=True)``; or, only when the caller trusts the package,
TorchScript weights (``torch.jit.load`` runs the package's compiled code). An architecture
given as a Python source file is refused: building it would run the package's code.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.models.bioimageio import (
    CARD_CONFIG_KEY,
    RDF_NAMES,
    UNET_KWARGS,
    BioimageioError,
    normalisation_from,
    require_spec,
)
from napari_cellseg.models.card import ModelCard, ModelCardError
from napari_cellseg.models.weights import LoadedModel

SOURCE = "bioimage.io package"
_UNET_CALLABLES = {
    ("segmentation_models_pytorch", "Unet"),
    ("segmentation_models_pytorch.decoders.unet.model", "Unet"),
    ("napari_cellseg.models.unet", "build_unet"),
    ("napari_cellseg.models", "build_unet"),
}
_OUTPUT_WORDS = (
    ("background", ("back",)),
    ("boundary", ("bound", "contour", "edge", "border")),
    ("interior", ("interior", "inside", "inner", "centre", "center")),
    ("foreground", ("fore", "nucle", "cell", "mask", "object")),
)


def is_bioimageio_package(path: str | Path) -> bool:
    """Whether ``path`` is a bioimage.io package: a zip or folder with a description.

    >>> is_bioimageio_package("no/such/file.zip")
    False
    """
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in RDF_NAMES)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name in RDF_NAMES for name in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def import_bioimageio(
    path: str | Path, *, device: str | torch.device = "cpu", trust_torchscript: bool = False
) -> LoadedModel:
    """Read a bioimage.io model package into a model napari-cellseg can run.

    Parameters
    ----------
    path : str or Path
        A package ``.zip``, or a folder with ``bioimageio.yaml`` (or ``rdf.yaml``).
    device : str or torch.device
        Where to put the model.
    trust_torchscript : bool
        Allow TorchScript weights when no state dict can be built. TorchScript is compiled
        code from the package's author: load it only from someone you trust.

    Returns
    -------
    LoadedModel
        With a card made from the package: normalisation from the input's preprocessing,
        channels from its axes, outputs and activation from the output (or the exact card
        of a package napari-cellseg exported).

    Raises
    ------
    BioimageioError
        One line: a corrupt zip, no description, unknown architecture, missing weights,
        unsupported preprocessing or axes, or TorchScript without ``trust_torchscript``.
    """
    path = Path(path)
    if not path.exists():
        raise BioimageioError(f"{path}: not found; check the path")
    with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-") as tmp:
        folder = _unpack(path, Path(tmp)) if path.is_file() else path
        descr = _describe(folder, path)
        loaded = _load(descr, folder, path, trust_torchscript=trust_torchscript)
    loaded.model = loaded.model.to(device).eval()
    return loaded


def read_bioimageio_card(path: str | Path) -> ModelCard:
    """The card :func:`import_bioimageio` would give, without loading the weights."""
    path = Path(path)
    if not path.exists():
        raise BioimageioError(f"{path}: not found; check the path")
    with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-") as tmp:
        folder = _unpack(path, Path(tmp)) if path.is_file() else path
        descr = _describe(folder, path)
        channels = _channels(descr.inputs[0], path, "input")
        classes = _channels(descr.outputs[0], path, "output")
        entry = descr.weights.pytorch_state_dict
        args = _unet_args(entry, path) if entry is not None else None
        return _card(descr, path, args, channels, classes)


def check_test_tensors(loaded: LoadedModel, path: str | Path) -> float:
    """Run the package's test input through ``loaded`` as napari-cellseg would.

    Returns the largest absolute difference from the package's test output (probabilities).
    """
    from napari_cellseg.models.normalise import normalise

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-") as tmp:
        folder = _unpack(path, Path(tmp)) if path.is_file() else path
        descr = _describe(folder, path)
        raw = np.load(_local_file(descr.inputs[0].test_tensor, folder, path), allow_pickle=False)
        expected = np.load(
            _local_file(descr.outputs[0].test_tensor, folder, path), allow_pickle=False
        )
    x = np.stack([normalise(np.asarray(s, np.float32), loaded.card.normalisation) for s in raw])
    device = next(iter(loaded.model.parameters()), torch.zeros(0)).device
    with torch.inference_mode():
        logits = loaded.model(torch.from_numpy(x).to(device)).float().cpu()
    if loaded.card.output_activation == "sigmoid":
        probs = torch.sigmoid(logits)
    else:
        probs = torch.softmax(logits, dim=1)
    if tuple(probs.shape) != tuple(expected.shape):
        raise BioimageioError(
            f"{path}: the model's output {tuple(probs.shape)} does not match the package's "
            f"test output {tuple(expected.shape)}"
        )
    return float(np.max(np.abs(probs.numpy() - expected)))


# -- reading -------------------------------------------------------------------------------
def _unpack(path: Path, into: Path) -> Path:
    """Check a package zip and extract its description; other files come on demand."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not any(name in RDF_NAMES for name in names):
                raise BioimageioError(
                    f"{path}: a zip without {' or '.join(RDF_NAMES)} at its top level; "
                    "not a bioimage.io model package"
                )
            for name in names:
                if name.startswith("/") or ".." in PurePosixPath(name).parts:
                    raise BioimageioError(f"{path}: refused: the zip holds a path {name!r}")
            for name in RDF_NAMES:
                if name in names:
                    zf.extract(name, into)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise BioimageioError(
            f"{path}: not a readable zip ({error}); copy the package again"
        ) from None
    return into


def _extract(path: Path, member: str, into: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            if member in zf.namelist():
                zf.extract(member, into)
    except (zipfile.BadZipFile, EOFError, OSError) as error:  # CRC errors are BadZipFile
        raise BioimageioError(
            f"{path}: {member} is corrupt in the zip ({error}); copy the package again"
        ) from None


def _describe(folder: Path, path: Path) -> Any:
    require_spec()
    from bioimageio.spec import InvalidDescr, load_model_description

    rdf = next((folder / n for n in RDF_NAMES if (folder / n).is_file()), None)
    if rdf is None:
        raise BioimageioError(f"{path}: no {' or '.join(RDF_NAMES)}; not a bioimage.io package")
    try:
        descr = load_model_description(rdf, perform_io_checks=False, format_version="latest")
    except (ValueError, OSError) as error:
        raise BioimageioError(f"{path}: unreadable description ({_first(error)})") from None
    if isinstance(descr, InvalidDescr):
        details = descr.validation_summary.details
        first = next((e for d in details for e in d.errors), None)
        what = f"{'.'.join(map(str, first.loc))}: {first.msg}" if first else "invalid"
        raise BioimageioError(f"{path}: not a valid bioimage.io model description ({what})")
    return descr


def _first(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _local_file(file_descr: Any, folder: Path, path: Path) -> Path:
    source = getattr(file_descr, "source", None)
    rel = getattr(source, "path", None)
    if source is None or rel is None:
        raise BioimageioError(
            f"{path}: {source or 'a file'} is not inside the package (remote files are "
            "never downloaded); use a package that holds all its files"
        )
    if path.is_file():  # a zip: extract this member now
        _extract(path, str(rel), folder)
    local = (folder / str(rel)).resolve()
    if not local.is_relative_to(folder.resolve()) or not local.is_file():
        raise BioimageioError(f"{path}: the package lacks {rel}; copy the whole package again")
    return local


def _load(descr: Any, folder: Path, path: Path, *, trust_torchscript: bool) -> LoadedModel:
    if len(descr.inputs) != 1 or not descr.outputs:
        raise BioimageioError(
            f"{path}: napari-cellseg runs models with one input tensor, this one has "
            f"{len(descr.inputs)}"
        )
    channels = _channels(descr.inputs[0], path, "input")
    classes = _channels(descr.outputs[0], path, "output")
    state_entry = descr.weights.pytorch_state_dict
    script_entry = descr.weights.torchscript
    args = _unet_args(state_entry, path) if state_entry is not None else None
    if args is None and script_entry is None:
        formats = ", ".join(k for k, v in descr.weights if v is not None) or "none"
        raise BioimageioError(
            f"{path}: no weights napari-cellseg can use (it has {formats}); it needs "
            "pytorch_state_dict with an smp Unet architecture, or torchscript"
        )
    if args is None and not trust_torchscript:
        raise BioimageioError(
            f"{path}: only TorchScript weights are usable, and loading TorchScript runs the "
            "package's compiled code; if you trust its author, pass --trust-torchscript "
            "(trust_torchscript=True)"
        )
    card = _card(descr, path, args, channels, classes)
    if args is not None:
        model = _state_dict_model(state_entry, card, folder, path)
        source = "bioimageio-pytorch_state_dict"
    else:
        import warnings

        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript loading
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(
                    str(_local_file(script_entry, folder, path)), map_location="cpu"
                )
        except (RuntimeError, ValueError) as error:
            raise BioimageioError(f"{path}: unreadable TorchScript ({_first(error)})") from None
        source = "bioimageio-torchscript"
    notes = [f"{path.name}: {card.name} imported from a bioimage.io package ({source})"]
    return LoadedModel(model=model, card=card, path=path, source=source, notes=notes)


def _channels(tensor: Any, path: Path, what: str) -> int:
    kinds = [a.type for a in tensor.axes]
    spaces = [str(a.id) for a in tensor.axes if a.type == "space"]
    if (
        sorted(spaces) != ["x", "y"]
        or "channel" not in kinds
        or set(kinds) - {"batch", "channel", "space"}
    ):
        raise BioimageioError(
            f"{path}: its {what} axes are {', '.join(map(str, (a.id for a in tensor.axes)))}; "
            "napari-cellseg runs 2-D models with batch, channel, y and x axes"
        )
    axis = next(a for a in tensor.axes if a.type == "channel")
    return len(axis.channel_names)


def _unet_args(entry: Any, path: Path) -> dict[str, Any] | None:
    arch = entry.architecture
    import_from = getattr(arch, "import_from", None)
    if import_from is None:
        return None  # architecture from a source file: never executed
    if (str(import_from), str(arch.callable)) not in _UNET_CALLABLES:
        return None
    kwargs = dict(arch.kwargs)
    unknown = sorted(set(kwargs) - set(UNET_KWARGS) - {"encoder_weights", "activation"})
    if unknown:
        raise BioimageioError(
            f"{path}: unknown architecture: {import_from}.{arch.callable} with arguments "
            f"{', '.join(unknown)} napari-cellseg does not build"
        )
    return {k: kwargs[k] for k in UNET_KWARGS if k in kwargs}


def _activation(descr: Any, arch_kwargs: dict[str, Any]) -> str | None:
    for step in descr.outputs[0].postprocessing:
        if str(step.id) in ("sigmoid", "softmax"):
            return str(step.id)
    activation = arch_kwargs.get("activation")
    if activation in ("sigmoid", "softmax", "softmax2d"):
        return "sigmoid" if activation == "sigmoid" else "softmax"
    return None


def _output_names(names: Sequence[str], classes: int, activation: str | None) -> list[str] | None:
    mapped = []
    for name in names:
        low = str(name).lower()
        found = next((ours for ours, words in _OUTPUT_WORDS if any(w in low for w in words)), None)
        if found is None or found in mapped:
            return None
        mapped.append(found)
    usable = {"interior", "boundary"} <= set(mapped) or bool(
        {"foreground", "background"} & set(mapped)
    )
    return mapped if usable and len(mapped) == classes else None


def _card(
    descr: Any, path: Path, args: dict[str, Any] | None, channels: int, classes: int
) -> ModelCard:
    config = getattr(descr, "config", None)
    extra = (getattr(config, "model_extra", None) or {}).get(CARD_CONFIG_KEY) or {}
    if isinstance(extra, dict) and isinstance(extra.get("card"), dict):
        try:
            return ModelCard.from_dict(extra["card"])
        except (ModelCardError, TypeError) as error:
            raise BioimageioError(f"{path}: its napari-cellseg card is invalid: {error}") from None
    arch_kwargs = dict(descr.weights.pytorch_state_dict.architecture.kwargs) if args else {}
    builder = dict(
        args or {"in_channels": channels, "classes": classes, "encoder_name": "torchscript"}
    )
    if int(builder.get("in_channels", 3)) != channels or int(builder.get("classes", 1)) != classes:
        raise BioimageioError(
            f"{path}: its architecture ({builder.get('in_channels', 3)} in, "
            f"{builder.get('classes', 1)} out) does not match its tensors ({channels} in, "
            f"{classes} out)"
        )
    activation = _activation(descr, arch_kwargs)
    out_axis = next(a for a in descr.outputs[0].axes if a.type == "channel")
    names = _output_names([str(n) for n in out_axis.channel_names], classes, activation)
    try:
        normalisation = normalisation_from(descr.inputs[0].preprocessing, str(path))
        return ModelCard.for_model(
            "unet",
            builder,
            normalisation=normalisation,
            outputs=names or [],
            output_activation=activation,
            name=str(descr.name),
            description=str(descr.description),
            provenance={
                "source": SOURCE,
                "file": path.name,
                "bioimageio": {
                    "id": str(descr.id) if descr.id else None,
                    "authors": [str(a.name) for a in descr.authors],
                    "license": str(descr.license) if descr.license else None,
                    "cite": [str(c.text) for c in descr.cite],
                },
            },
        )
    except (ModelCardError, CellsegError) as error:
        if isinstance(error, BioimageioError):
            raise
        raise BioimageioError(f"{path}: no usable model card: {error}") from None


def _state_dict_model(entry: Any, card: ModelCard, folder: Path, path: Path) -> torch.nn.Module:
    from napari_cellseg.models.build import build_model
    from napari_cellseg.models.state_dict_io import read_state_dict

    weights = _local_file(entry, folder, path)
    try:
        state, _meta, _source = read_state_dict(weights)  # torch.load(weights_only=True)
        model = build_model("unet", **card.builder_args)
    except CellsegError as error:
        raise BioimageioError(f"{path}: {error}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BioimageioError(
            f"{path}: unknown architecture: its weights do not fit smp Unet "
            f"{card.architecture} ({_first(error).rstrip(':. ')})"
        ) from None
    return model
