"""A third model family from one module and one table entry: the family table's promise.

This module is the toy family's part on every layer (models, inference and training); the
:func:`_toy_in_the_table` fixture adds its one :class:`FamilySpec` to
:data:`napari_cellseg.families.FAMILIES`. Nothing else is registered or patched, and the toy
then passes the same conformance checks as the built-in families.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Sequence, Set
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from family_conformance import FamilyConformance, blobs
from napari_cellseg.errors import WeightFileError
from napari_cellseg.events import Progress
from napari_cellseg.families import FAMILIES, FamilySpec
from napari_cellseg.inference.object_table import object_table
from napari_cellseg.inference.postprocess import unet_instances
from napari_cellseg.params import PostprocessParams

# -- models part -----------------------------------------------------------------------------
EXPECTED_KEYS = "a toy network (toy.body.*)"


def build_toy(*, in_channels: int = 3, hidden: int = 4) -> torch.nn.Module:
    """Two convolutions: ``in_channels`` → ``hidden`` → one foreground logit."""
    body = torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, hidden, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(hidden, 1, 1),
    )
    return torch.nn.Sequential(body)


def default_outputs(builder_args: dict[str, Any]) -> tuple[list[str], str | None]:
    return ["foreground"], "sigmoid"


def input_channels(builder_args: dict[str, Any]) -> int:
    return int(builder_args.get("in_channels", 3))


def architecture(builder_args: dict[str, Any]) -> str:
    return f"conv{builder_args.get('hidden', 4)}"


def claims_state_dict(keys: Set[str]) -> bool:
    return False  # the toy only reads its own weight files


def infer_builder_args(state: Any, path: str | Path) -> dict[str, Any]:
    raise WeightFileError(path, "the toy family reads no foreign files")


# -- inference part: the whole plane in one pass ------------------------------------------
def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model


def tile_geometry(card: Any, tile_size: int, overlap: int) -> tuple[int, int]:
    return tile_size, overlap


def run_tiles(
    runner: Any,
    x: np.ndarray,
    batches: list,
    overlap: int,
    params: Any,
    checkpoint: Callable[[Any], Any],
    message: str,
) -> Generator[Any, None, np.ndarray]:
    with torch.inference_mode():
        logits = runner.model(torch.from_numpy(np.ascontiguousarray(x))[None].to(runner.device))
    yield checkpoint(Progress("tiles", 1, 1, message))
    return torch.sigmoid(logits.float())[0].cpu().numpy()


def to_instances(
    card: Any, output: np.ndarray, shape: tuple[int, int], post: PostprocessParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels = unet_instances(output, card.outputs, post)
    return labels, object_table(labels)


def output_shape(output: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    return tuple(output.shape[-2:])


# -- training part ---------------------------------------------------------------------------
def check_outputs(outputs: Sequence[str]) -> None:
    assert list(outputs) == ["foreground"]


def crop_target(labels: np.ndarray, outputs: Sequence[str], inner: tuple[slice, slice]):
    return torch.from_numpy((labels[inner] > 0).astype(np.float32)[None])


def collate(batch):
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(targets)


def loss(model, images, targets, loss_fn, device) -> torch.Tensor:
    logits = model(images.to(device))
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.to(device))


# -- the one table entry -----------------------------------------------------------------
HERE = sys.modules[__name__]
TOY = FamilySpec(
    name="toy",
    title="Toy CNN",
    models=HERE,
    inference=HERE,
    training=HERE,
    builder="build_toy",
    default_builder_args={"in_channels": 3, "hidden": 4},
    head_arg="hidden",
    train_defaults={
        "optimizer": "adamw",
        "learning_rate": 1e-2,
        "weight_decay": 0.0,
        "schedule": "constant",
    },
    thresholds=("prob_threshold",),
    main_threshold="prob_threshold",
    tuning_grids=((frozenset(), {"prob_threshold": (0.3, 0.5, 0.7), "min_size": (10,)}),),
)


@pytest.fixture(autouse=True)
def _toy_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "toy", TOY)


class TestToyFamily(FamilyConformance):
    family = "toy"
    builder_args: ClassVar[dict[str, Any]] = {"in_channels": 3, "hidden": 4}


def test_the_toy_is_offered_wherever_families_are_listed() -> None:
    from napari_cellseg.cli.app import build_parser
    from napari_cellseg.models import available_families

    assert available_families() == ["maskrcnn", "toy", "unet"]
    train = build_parser().parse_args(["train", "--model", "toy", "--data", "x", "--out", "y"])
    assert train.model == "toy"


def test_the_toy_trains_from_its_default_builder_args(tmp_path: Path) -> None:
    from napari_cellseg.io.images import write_labels
    from napari_cellseg.models import load_weights
    from napari_cellseg.params import TrainParams
    from napari_cellseg.training.loop import fit

    image, labels = blobs()
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    import tifffile

    tifffile.imwrite(tmp_path / "data" / "images" / "a.tif", image)
    write_labels(tmp_path / "data" / "masks" / "a.tif", labels.astype(np.uint16))
    params = TrainParams(
        family="toy", epochs=1, batch_size=2, patch_size=32, samples_per_epoch=2,
        val_fraction=0.0, device="cpu", augment=False,
    )  # fmt: skip
    out = tmp_path / "toy.safetensors"
    fit([tmp_path / "data"], out, params)
    loaded = load_weights(out)
    assert loaded.card.family == "toy" and loaded.card.builder_args == TOY.default_builder_args
