"""Exporting a U-Net weight file as a zipped bioimage.io model package (``bioimageio.yaml``).

The package holds the weights as a plain PyTorch state dict (and optionally TorchScript),
the architecture as ``segmentation_models_pytorch.Unet(**kwargs)``, a test input computed
from a sample image and the matching test output computed by running the model, a cover,
a README made from the card, and the card itself under ``config["napari-cellseg"]`` so that
importing it back restores every field. The package is validated with ``bioimageio.spec``.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from collections.abc import Generator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cellseg.events import Progress, drain
from napari_cellseg.models.bioimageio import (
    CARD_CONFIG_KEY,
    UNET_KWARGS,
    BioimageioError,
    preprocessing_for,
    readme,
    require_spec,
    validate_package,
    write_cover,
)
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel, load_weights, read_card

FORMAT_VERSION = "0.5.4"  # the oldest 0.5 release validators accept; newer ones convert
TEST_SIZE = 256
CITATIONS = [
    {
        "text": "Ronneberger, Fischer & Brox. U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation. MICCAI 2015",
        "doi": "10.1007/978-3-319-24574-4_28",
    },
    {
        "text": "Iakubovskii. Segmentation Models Pytorch (2019)",
        "url": "https://github.com/qubvel-org/segmentation_models.pytorch",
    },
]
DSB_CITATION = {
    "text": "Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 Data "
    "Science Bowl. Nature Methods 2019",
    "doi": "10.1038/s41592-019-0612-7",
}


def export_bioimageio(weights: str | Path | LoadedModel, out: str | Path, **options: Any) -> Path:
    """:func:`iter_export_bioimageio` run to its end: the package written."""
    return drain(iter_export_bioimageio(weights, out, **options))


def export_refusal(card: ModelCard, path: str | Path) -> str | None:
    """Why the model of ``card`` (from ``path``) cannot be exported, in one line, or None.

    >>> export_refusal(ModelCard.for_model("unet", {}), "w.safetensors") is None
    True
    >>> export_refusal(ModelCard.for_model("maskrcnn", {}), "m.safetensors")[:40]
    'm.safetensors: a maskrcnn cannot be expo'
    """
    if card.family == "unet":
        return None
    return (
        f"{path}: a {card.family} cannot be exported: the bioimage.io model spec "
        "describes tensor outputs, not Mask R-CNN's variable-length list of detections; "
        "export a U-Net"
    )


def _refuse(refusal: str | None) -> None:
    if refusal is not None:
        raise BioimageioError(refusal)


def iter_export_bioimageio(
    weights: str | Path | LoadedModel,
    out: str | Path,
    *,
    authors: Sequence[str] = (),
    license: str = "CC-BY-4.0",
    test_image: np.ndarray | str | Path | None = None,
    torchscript: bool = False,
    validate: bool = True,
) -> Generator[Progress, None, Path]:
    """Write a U-Net weight file as a zipped bioimage.io model package, yielding progress.

    Stopping at a yield (closing the generator) writes nothing.

    Parameters
    ----------
    weights : str, Path or LoadedModel
        A U-Net weight file (anything :func:`~napari_cellseg.models.load_weights` reads).
    out : str or Path
        The ``.zip`` to write (atomically: an existing file is replaced only when done).
    authors : sequence of str
        Names of the people who made the model; default "napari-cellseg user".
    license : str
        An SPDX licence identifier for the package (default ``CC-BY-4.0``).
    test_image : array, str or Path, optional
        The image the test input is cut from (``(Y, X)`` or ``(Y, X, C)``); by default the
        bundled fluorescence sample, else a synthetic image. A central
        256 × 256 crop (or less) is taken.
    torchscript : bool
        Also store TorchScript weights (traced; doubles the size).
    validate : bool
        Validate the written package with ``bioimageio.spec`` (offline).

    Yields
    ------
    Progress
        Stage ``"export"``: loading, test tensors and weights, zip, validation.

    Returns
    -------
    Path
        The package written.

    Raises
    ------
    BioimageioError
        The extra is missing, the model is a Mask R-CNN, or the package does not validate.
    """
    require_spec()
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise BioimageioError(f"{out}: a bioimage.io package is a .zip; name it e.g. model.zip")
    yield Progress("export", 0, 4, "loading the weights")
    if not isinstance(weights, LoadedModel):  # refused from the card, before loading
        _refuse(export_refusal(read_card(weights), weights))
    loaded = weights if isinstance(weights, LoadedModel) else load_weights(weights)
    card = loaded.card
    _refuse(export_refusal(card, loaded.path))
    with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-") as tmp:
        folder = Path(tmp)
        yield Progress("export", 1, 4, "test tensors, cover and weights")
        rdf = _write_files(loaded, folder, test_image, torchscript=torchscript)
        rdf.update(_metadata(card, authors or ["napari-cellseg user"], license))
        _write_yaml(folder / "bioimageio.yaml", rdf)
        yield Progress("export", 2, 4, "zipping")
        data = _zip_folder(folder)
    from napari_cellseg.io.atomic import atomic_write_bytes

    if validate:
        yield Progress("export", 3, 4, "validating with bioimageio.spec (offline)")
        with tempfile.TemporaryDirectory(prefix="cellseg-bioimageio-check-") as tmp:
            check = Path(tmp) / out.name
            check.write_bytes(data)
            validate_package(check)
    atomic_write_bytes(out, data)
    yield Progress("export", 4, 4, f"written {out}")
    return out


def _write_files(
    loaded: LoadedModel, folder: Path, test_image: Any, *, torchscript: bool
) -> dict[str, Any]:
    from napari_cellseg.models.normalise import as_channels_first, map_channels, normalise

    card = loaded.card
    model = loaded.model.to("cpu").float().eval()
    plane = _test_plane(test_image, card)
    raw = map_channels(as_channels_first(plane), card.input_channels, card.channel_handling, None)
    raw = raw.astype(np.float32)[None]  # (1, C, Y, X) in the image's own value range
    x = normalise(raw[0], card.normalisation, dtype=plane.dtype)[None]
    with torch.inference_mode():
        logits = model(torch.from_numpy(x))
        if card.output_activation == "sigmoid":
            probs = torch.sigmoid(logits)
        else:
            probs = torch.softmax(logits, dim=1)
    output = probs.numpy().astype(np.float32)
    _save_npy(folder / "test_input.npy", raw)
    _save_npy(folder / "test_output.npy", output)
    _save_tif(folder / "sample_input.tif", raw)
    _save_tif(folder / "sample_output.tif", output)
    write_cover(folder / "cover.png", x[0], output[0], card.outputs)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, folder / "weights.pt")
    weights: dict[str, Any] = {
        "pytorch_state_dict": {
            "source": "weights.pt",
            "sha256": _sha256(folder / "weights.pt"),
            "architecture": {
                "callable": "Unet",
                "import_from": "segmentation_models_pytorch",
                "kwargs": unet_kwargs(card.builder_args),
            },
            "pytorch_version": _version("torch"),
            "comment": "smp.Unet(**kwargs).load_state_dict(torch.load(weights.pt, "
            "weights_only=True)); outputs logits (the package's postprocessing applies "
            f"{card.output_activation})",
        }
    }
    if torchscript:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, torch.from_numpy(x), check_trace=False)
        traced.save(str(folder / "weights_torchscript.pt"))
        weights["torchscript"] = {
            "source": "weights_torchscript.pt",
            "sha256": _sha256(folder / "weights_torchscript.pt"),
            "pytorch_version": _version("torch"),
            "parent": "pytorch_state_dict",
            "comment": "torch.jit.trace of the state-dict model",
        }
    (folder / "README.md").write_text(readme(card), encoding="utf-8")
    dtype_max = float(np.iinfo(plane.dtype).max) if plane.dtype.kind in "iu" else 1.0
    return {
        "inputs": [_input(card, raw, folder, dtype_max)],
        "outputs": [_output(card, folder)],
        "weights": weights,
        "covers": ["cover.png"],
        "documentation": "README.md",
    }


def unet_kwargs(builder_args: dict[str, Any]) -> dict[str, Any]:
    """``smp.Unet`` keyword arguments for a card's builder arguments (never a download).

    >>> unet_kwargs({"encoder_name": "resnet18", "classes": 3, "encoder_weights": "e.pth"})
    {'encoder_name': 'resnet18', 'classes': 3, 'encoder_weights': None}
    """
    kwargs = {k: builder_args[k] for k in UNET_KWARGS if k in builder_args}
    if "decoder_channels" in kwargs:
        kwargs["decoder_channels"] = [int(c) for c in kwargs["decoder_channels"]]
    kwargs["encoder_weights"] = None  # smp's default "imagenet" would download
    return kwargs


def _input(card: ModelCard, raw: np.ndarray, folder: Path, dtype_max: float) -> dict[str, Any]:
    step = 2 ** int(card.builder_args.get("encoder_depth", 5))
    size = {"min": max(64, step), "step": step}
    names = _channel_names(card)
    norm = card.normalisation
    return {
        "id": "raw",
        "description": f"image, {card.channel_handling} channels ({', '.join(names)}), "
        "in its own value range",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": names},
            {"type": "space", "id": "y", "size": size},
            {"type": "space", "id": "x", "size": size},
        ],
        "test_tensor": _file(folder, "test_input.npy"),
        "sample_tensor": _file(folder, "sample_input.tif"),
        "data": {"type": "float32"},
        "preprocessing": preprocessing_for(norm, card.input_channels, dtype_max=dtype_max),
    }


def _output(card: ModelCard, folder: Path) -> dict[str, Any]:
    outputs = [str(o) for o in card.outputs]
    activation = card.output_activation or "softmax"
    post = (
        [{"id": "sigmoid"}]
        if activation == "sigmoid"
        else [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    )
    ref = {"tensor_id": "raw"}
    return {
        "id": "probabilities",
        "description": f"{activation} probabilities of {', '.join(outputs)}"[:128],
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": [_identifier(o) for o in outputs]},
            {"type": "space", "id": "y", "size": {**ref, "axis_id": "y"}},
            {"type": "space", "id": "x", "size": {**ref, "axis_id": "x"}},
        ],
        "test_tensor": _file(folder, "test_output.npy"),
        "sample_tensor": _file(folder, "sample_output.tif"),
        "data": {"type": "float32", "range": [0.0, 1.0]},
        "postprocessing": post,
    }


def _channel_names(card: ModelCard) -> list[str]:
    if card.channel_handling == "rgb" and card.input_channels == 3:
        return ["red", "green", "blue"]
    if card.input_channels == 1:
        return ["grey"]
    return [f"channel{i}" for i in range(card.input_channels)]


def _identifier(name: str) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return text if text[:1].isalpha() else f"c_{text}"


def _metadata(card: ModelCard, authors: Sequence[str], license: str) -> dict[str, Any]:
    cite = list(CITATIONS)
    datasets = {str(d.get("dataset", "")) for d in card.provenance.get("data_manifest") or []}
    if any(name.startswith("stage1") or "dsb" in name.lower() for name in datasets):
        cite.append(DSB_CITATION)
    description = card.description or f"U-Net ({card.architecture}) from napari-cellseg"
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": _name(card.name),
        "description": description.splitlines()[0][:1024],
        # no github_user: the validator would look it up online (bioimage.io asks on upload)
        "authors": [{"name": str(a)} for a in authors],
        "cite": cite,
        "license": license,
        "tags": ["napari-cellseg", "unet", "segmentation", "instance-segmentation", "2d"],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": "1.0.0",
        "config": {CARD_CONFIG_KEY: {"card": card.to_dict()}},
    }


def _name(text: str) -> str:
    name = "".join(c if c.isalnum() or c in " _-()" else " " for c in text).strip()
    return (name or "napari-cellseg U-Net")[:128]


# -- files -----------------------------------------------------------------------------------
def _test_plane(test_image: Any, card: ModelCard) -> np.ndarray:
    if test_image is None:
        test_image = _default_sample()
    if isinstance(test_image, (str, Path)):
        from napari_cellseg.io.images import read_image

        image = read_image(test_image)
        data = np.asarray(image.data)
        while data.ndim > 3 or (data.ndim == 3 and data.shape[-1] > 4):
            data = data[0]
        test_image = data
    plane = np.asarray(test_image)
    step = 2 ** int(card.builder_args.get("encoder_depth", 5))
    size = [
        max(64, step) + (min(n, TEST_SIZE) - max(64, step)) // step * step for n in plane.shape[:2]
    ]
    if min(plane.shape[:2]) < max(64, step):
        raise BioimageioError(f"the test image is too small ({plane.shape}); give a larger one")
    y0, x0 = ((n - s) // 2 for n, s in zip(plane.shape[:2], size, strict=True))
    return np.ascontiguousarray(plane[y0 : y0 + size[0], x0 : x0 + size[1]])


def _default_sample() -> np.ndarray:
    try:
        from napari_cellseg.io.images import read_image
        from napari_cellseg.io.samples import sample_data_dir

        return np.asarray(read_image(sample_data_dir() / "images" / "dsb_fluorescence.png").data)
    except Exception:  # no sample data installed: blobs
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:TEST_SIZE, :TEST_SIZE]
        image = np.zeros((TEST_SIZE, TEST_SIZE), np.float32)
        for cy, cx in rng.uniform(20, TEST_SIZE - 20, (25, 2)):
            image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
        return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save_tif(path: Path, array: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, array, photometric="minisblack", compression="zlib")


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.write_bytes(buffer.getvalue())


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: plain YAML
            return True

    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, file.name)
    return buffer.getvalue()


def _file(folder: Path, name: str) -> dict[str, str]:
    return {"source": name, "sha256": _sha256(folder / name)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name).split("+")[0]
