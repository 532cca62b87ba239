"""Saving and loading weight files: native ``.safetensors`` with a model card, or foreign files."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_cellseg.errors import CellsegError, WeightFileError
from napari_cellseg.families import family_spec
from napari_cellseg.models.architecture import infer_architecture
from napari_cellseg.models.build import build_model
from napari_cellseg.models.card import CARD_METADATA_KEY, ModelCard, ModelCardError
from napari_cellseg.models.state_dict_io import (
    StateDict,
    read_state_dict,
    safetensors_header,
)

FOREIGN_SOURCE = "foreign file (architecture inferred from its keys and shapes)"
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class _ModelSlot:
    """A model, or how to build it when it is first asked for (shared by a
    :class:`LoadedModel` and its :meth:`~LoadedModel.with_card` copies)."""

    def __init__(
        self, model: torch.nn.Module | None, build: Callable[[], torch.nn.Module] | None
    ) -> None:
        self.model = model
        self.build = build
        self.lock = threading.Lock()
        self.versions = state_versions(model) if model is not None else ()

    def get(self) -> torch.nn.Module:
        with self.lock:
            if self.model is None:
                assert self.build is not None
                self.model = self.build()
                self.build = None
                self.versions = state_versions(self.model)
            return self.model

    def set(self, model: torch.nn.Module) -> None:
        with self.lock:
            self.model, self.build, self.versions = model, None, state_versions(model)

    def __getstate__(self) -> dict:  # pickled or copied built (no lock, no closure)
        return {"model": self.get()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model"], None)


@dataclass(eq=False)
class LoadedModel:
    """A model ready for inference, with the card that describes it.

    Parameters
    ----------
    model : torch.nn.Module or None
        The model; ``None`` with ``build``, which makes it the first time :attr:`model` is
        read (a deferred model: see :meth:`deferred`).
    card : ModelCard
        What the model is and how to run it.
    path : Path
        The weight file (or a placeholder such as ``<training>``).
    source : str
        How the file was read (``"safetensors"``, ``"torch"``, ...).
    notes : list of str, optional
        What loading had to say (e.g. an inferred architecture).
    build : callable, optional
        Builds the model (only with ``model=None``). ``dataclasses.replace`` builds a deferred
        model; :meth:`with_card` does not.
    """

    model: torch.nn.Module | None  # a property below: the slot's model, built when read
    card: ModelCard
    path: Path
    source: str
    notes: list[str] = field(default_factory=list)
    build: Callable[[], torch.nn.Module] | None = field(default=None, repr=False)
    #: sha256-based key of the weight file this model was read from, unchanged, when a
    #: loader computed it (``inference.onnx_known``); ``None`` otherwise.
    file_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        model = self.__dict__.pop("_model_given", None)
        if model is None and self.build is None:
            raise ValueError("LoadedModel needs a model or a way to build it")
        self._slot = _ModelSlot(model, self.build)
        self.build = None  # held by the slot until used

    @classmethod
    def deferred(
        cls, build: Callable[[], torch.nn.Module], card: ModelCard, path: Path, source: str
    ) -> LoadedModel:
        """A loaded model whose network is built only when :attr:`model` is first read
        (e.g. never, when a cached ONNX export of the same file runs it)."""
        return cls(None, card, path, source, build=build)

    def _get_model(self) -> torch.nn.Module:
        return self._slot.get()

    def _set_model(self, model: torch.nn.Module | None) -> None:
        if "_slot" not in self.__dict__:  # from __init__: __post_init__ makes the slot
            self.__dict__["_model_given"] = model
            return
        self._slot.set(model)

    @property
    def built(self) -> bool:
        """Whether the PyTorch model exists (a deferred one is built on first use)."""
        return self._slot.model is not None

    @property
    def pristine(self) -> bool:
        """Whether the model is as it was loaded: never built, or built and its parameters
        and buffers never modified in place since (:func:`state_versions`)."""
        slot = self._slot
        return slot.model is None or state_versions(slot.model) == slot.versions

    @property
    def identity(self) -> object:
        """An object shared by this model and its :meth:`with_card` copies, and by nothing
        else (a key for what is cached per model)."""
        return self._slot

    def with_card(self, card: ModelCard, notes: list[str] | None = None) -> LoadedModel:
        """The same model (built or deferred, built at most once) described by ``card``."""
        copy = object.__new__(LoadedModel)  # no new slot: this one's, built or not
        fields = {"card": card, "path": self.path, "source": self.source, "build": None}
        copy.__dict__.update(fields, file_key=self.file_key, _slot=self._slot)
        copy.notes = list(notes if notes is not None else self.notes)
        return copy

    def __repr__(self) -> str:
        state = "built" if self.built else "deferred"
        return f"LoadedModel({self.card.family} {self.card.architecture}, {self.path}, {state})"


#: The PyTorch model, built when first read if it was deferred (set: replaces it).
LoadedModel.model = property(LoadedModel._get_model, LoadedModel._set_model)  # type: ignore[assignment]


def state_versions(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is modified in place (e.g. by an
    optimiser): the tensors' version counters."""
    return tuple(t._version for t in model.state_dict(keep_vars=True).values())


def save_weights(
    model: torch.nn.Module, card: ModelCard, path: str | Path, *, half: bool = False
) -> Path:
    """Write ``model``'s weights and ``card`` atomically into one ``.safetensors`` file.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose ``state_dict()`` is saved.
    card : ModelCard
        Stored as JSON in the safetensors metadata under ``"cellseg.card"``.
    path : str or Path
        Target file; must end in ``.safetensors``. Written via a temporary file and a
        rename, so a crash never leaves a half-written file.
    half : bool
        Store floating-point tensors as float16 (halves the size; loading casts back).

    Returns
    -------
    Path
        The written file.
    """
    from safetensors.torch import save

    from napari_cellseg.io.atomic import atomic_write_bytes

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightFileError(path, "native weight files must end in .safetensors")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[key] = tensor.clone().contiguous()
    metadata = {CARD_METADATA_KEY: card.to_json(), "format": "napari-cellseg"}
    try:
        atomic_write_bytes(path, save(tensors, metadata=metadata))
    except OSError as error:
        raise WeightFileError(path, f"could not be written ({error.strerror or error})") from None
    return path


def stores_float16(path: str | Path) -> bool:
    """Whether ``path`` is a native file whose tensors are stored as float16.

    A copy written with ``save_weights(..., half=stores_float16(path))`` keeps the size of
    the original. Anything unreadable or foreign answers ``False``.
    """
    from napari_cellseg.models.state_dict_io import safetensors_header

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        header = safetensors_header(path)
    except CellsegError:
        return False
    return any(v.get("dtype") == "F16" for k, v in header.items() if k != "__metadata__")


def weights_root(path: str | Path) -> Path:
    """What a weight path names: a bioimage.io package's folder for its description file.

    The description (``bioimageio.yaml`` / ``rdf.yaml``) is what a file dialog can pick
    in an unzipped package; every other path is returned as it is.

    >>> weights_root("unzipped/rdf.yaml").as_posix(), weights_root("w.safetensors").as_posix()
    ('unzipped', 'w.safetensors')
    """
    from napari_cellseg.models.bioimageio import RDF_NAMES

    path = Path(path)
    return path.parent if path.name in RDF_NAMES else path


def read_card(path: str | Path) -> ModelCard:
    """Return the model card of a weight file (inferred for foreign files).

    For native files only the header is read, so this is fast even for large files. A
    bioimage.io package may be named by its ``.zip``, its folder or its description file.
    """
    path = weights_root(path)
    if _is_package(path):
        from napari_cellseg.models.bioimageio_import import read_bioimageio_card

        return read_bioimageio_card(path)
    if path.is_file() and path.suffix == ".safetensors":
        metadata = safetensors_header(path).get("__metadata__") or {}
        if CARD_METADATA_KEY in metadata:
            return _parse_card(path, metadata[CARD_METADATA_KEY])
    state, metadata, source = read_state_dict(path)
    return _card_for(path, state, metadata, source)


def load_weights(
    path: str | Path, *, device: str | torch.device = "cpu", card: ModelCard | None = None
) -> LoadedModel:
    """Load any supported weight file into a ready model (in eval mode).

    Parameters
    ----------
    path : str or Path
        A native ``.safetensors`` file, a foreign smp U-Net / torchvision Mask R-CNN state
        dict (``.pt``/``.pth``/``.bin``/``.safetensors``, possibly wrapped in a checkpoint
        dict), an smp ``save_pretrained`` folder, or a bioimage.io model package (``.zip`` or
        folder, or the folder's ``rdf.yaml`` / ``bioimageio.yaml``) with U-Net state-dict
        weights (see ``models.bioimageio_import``).
    device : str or torch.device
        Where to put the model.
    card : ModelCard, optional
        Overrides the stored or inferred card (e.g. a different normalisation).

    Returns
    -------
    LoadedModel

    Raises
    ------
    WeightFileError
        One line naming the file and the problem: not a weight file, truncated, unknown
        architecture, shape mismatch, or a pickle carrying code (refused unexecuted).
    """
    path = weights_root(path)
    if _is_package(path):
        from napari_cellseg.models.bioimageio_import import import_bioimageio

        loaded = import_bioimageio(path, device=device)
        if card is not None:
            loaded.card = card
        return loaded
    state, metadata, source = read_state_dict(path)
    card = card or _card_for(path, state, metadata, source)
    try:
        model = build_model(card.family, **card.builder_args)
    except CellsegError as error:
        raise WeightFileError(path, f"its model card cannot be built: {error}") from None
    notes = _check_compatible(path, model.state_dict(), state, card)
    model.load_state_dict(state, strict=False)
    model.eval()
    return LoadedModel(model=model.to(device), card=card, path=path, source=source, notes=notes)


def _is_package(path: Path) -> bool:
    """A bioimage.io package (zip or folder with its description); cheap, no extra needed."""
    if path.suffix.lower() != ".zip" and not path.is_dir():
        return False
    from napari_cellseg.models.bioimageio_import import is_bioimageio_package

    return is_bioimageio_package(path)


def _parse_card(path: Path, text: str) -> ModelCard:
    try:
        return ModelCard.from_json(text)
    except ModelCardError as error:
        raise WeightFileError(path, f"invalid model card: {error}") from None
    except TypeError as error:
        raise WeightFileError(path, f"invalid model card: {error}") from None


def _card_for(path: Path, state: StateDict, metadata: dict[str, Any], source: str) -> ModelCard:
    if CARD_METADATA_KEY in metadata:
        return _parse_card(path, metadata[CARD_METADATA_KEY])
    if "smp_config" in metadata:
        family, args = "unet", _smp_builder_args(path, metadata["smp_config"])
        origin = "segmentation-models-pytorch save_pretrained folder"
    else:
        family, args = infer_architecture(state, path)
        origin = FOREIGN_SOURCE
    return ModelCard.for_model(
        family,
        args,
        normalisation=dict(family_spec(family).foreign_normalisation),  # see docs/weights.md
        name=path.stem,
        provenance={"source": origin, "file": path.name},
    )


def _smp_builder_args(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    model_class = config.get("_model_class", "Unet")
    if model_class != "Unet":
        raise WeightFileError(
            path, f"unknown architecture: smp {model_class}; napari-cellseg runs smp Unet models"
        )
    args: dict[str, Any] = {
        "encoder_name": config.get("encoder_name", "resnet34"),
        "in_channels": int(config.get("in_channels", 3)),
        "classes": int(config.get("classes", 1)),
        "encoder_depth": int(config.get("encoder_depth", 5)),
        "decoder_channels": list(config.get("decoder_channels", (256, 128, 64, 32, 16))),
        "decoder_attention_type": config.get("decoder_attention_type"),
    }
    norm = config.get("decoder_use_norm", config.get("decoder_use_batchnorm", "batchnorm"))
    args["decoder_use_norm"] = "batchnorm" if norm is True else norm
    return args


def _check_compatible(
    path: Path, own: dict[str, torch.Tensor], state: StateDict, card: ModelCard
) -> list[str]:
    def relevant(keys: set[str]) -> list[str]:
        return sorted(k for k in keys if not k.endswith(_IGNORED_SUFFIXES))

    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if mismatched:
        more = f" (+{len(mismatched) - 2} more)" if len(mismatched) > 2 else ""
        raise WeightFileError(
            path,
            f"shape mismatch with the {card.family} {card.architecture} it describes: "
            + "; ".join(mismatched[:2])
            + more,
        )
    missing = relevant(set(own) - set(state))
    unexpected = relevant(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) such as {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) such as {', '.join(unexpected[:3])}")
        raise WeightFileError(
            path,
            f"unknown architecture: its keys do not match a {card.family} "
            f"{card.architecture} ({'; '.join(parts)})",
        )
    notes = []
    if card.provenance.get("source") == FOREIGN_SOURCE:
        notes.append(
            f"{path.name}: no model card; inferred {card.family} {card.architecture} with "
            f"{card.input_channels} input channel(s) and default normalisation "
            f"{card.normalisation['method']}"
        )
    return notes
