"""The checks every model family must pass (smp's ``BaseModelTester`` style).

A test module subclasses :class:`FamilyConformance` once per family, setting ``family`` and
``builder_args`` (a tiny, randomly initialised model: each test takes seconds on the CPU).
The checks run the family through its whole life: build, save, load, predict, re-apply
thresholds, one training step, and what its table entry promises.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from napari_cellseg.families import family_part, family_spec
from napari_cellseg.inference import predict
from napari_cellseg.inference.planes import reapply
from napari_cellseg.models import ModelCard, build_model, load_weights, read_card, save_weights
from napari_cellseg.params import PostprocessParams, PredictParams, TrainParams

CPU = PredictParams(device="cpu", tile_size=64, overlap=8, mixed_precision=False)
MODELS_API = (
    "default_outputs",
    "input_channels",
    "architecture",
    "EXPECTED_KEYS",
    "claims_state_dict",
    "infer_builder_args",
)
INFERENCE_API = ("prepare_model", "tile_geometry", "run_tiles", "to_instances", "output_shape")
TRAINING_API = ("check_outputs", "crop_target", "collate", "loss")


def blobs(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 image with four bright squares, and their instance labels."""
    labels = np.zeros((size, size), np.int64)
    for k, (y, x) in enumerate([(8, 8), (8, 36), (36, 8), (36, 36)], start=1):
        labels[y : y + 16, x : x + 16] = k
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    return image, labels


class FamilyConformance:
    """Subclass with ``family`` and ``builder_args``; every test is inherited."""

    family: str
    builder_args: ClassVar[dict[str, Any]]

    def build(self) -> tuple[torch.nn.Module, ModelCard]:
        torch.manual_seed(0)
        return build_model(self.family, **self.builder_args), ModelCard.for_model(
            self.family, self.builder_args
        )

    @pytest.fixture
    def saved(self, tmp_path: Path) -> Path:
        model, card = self.build()
        return save_weights(model, card, tmp_path / f"{self.family}.safetensors")

    # -- the table entry ---------------------------------------------------------------
    def test_spec_names_a_module_with_the_whole_api_on_every_layer(self) -> None:
        spec = family_spec(self.family)
        assert spec.name == self.family
        for layer, api in (
            ("models", MODELS_API),
            ("inference", INFERENCE_API),
            ("training", TRAINING_API),
        ):
            part = family_part(self.family, layer)
            missing = [name for name in api if not hasattr(part, name)]
            assert not missing, f"{self.family} {layer} part lacks {missing}"
        assert callable(getattr(family_part(self.family, "models"), spec.builder))

    def test_spec_thresholds_grids_and_defaults_are_valid_params(self) -> None:
        spec = family_spec(self.family)
        post = {f.name for f in fields(PostprocessParams)}
        assert set(spec.thresholds) <= post
        assert spec.main_threshold in spec.thresholds
        card = self.build()[1]
        grid = spec.tuning_grid(card.outputs)
        assert grid and set(grid) <= post
        defaults = PostprocessParams()
        for name, values in grid.items():  # each grid holds the library defaults
            assert getattr(defaults, name) in values, name
        resolved = TrainParams(family=self.family).to_dict()
        for name, value in spec.train_defaults.items():
            assert resolved[name] == value
        builder = getattr(family_part(self.family, "models"), spec.builder)
        assert spec.head_arg in inspect.signature(builder).parameters
        assert spec.head_arg in spec.default_builder_args

    # -- build, save, load -------------------------------------------------------------
    def test_build_gives_a_module_and_a_card_by_the_family_conventions(self) -> None:
        model, card = self.build()
        assert isinstance(model, torch.nn.Module)
        outputs, activation = family_part(self.family, "models").default_outputs(self.builder_args)
        assert card.outputs == outputs and card.output_activation == activation
        assert card.name == f"{self.family}-{card.architecture}"
        assert family_spec(self.family).title in card.summary()

    def test_save_then_load_gives_the_same_weights_and_card(self, saved: Path) -> None:
        model, card = self.build()
        loaded = load_weights(saved)
        assert loaded.card.to_dict() == {**card.to_dict(), "created": loaded.card.created}
        assert read_card(saved).to_dict() == loaded.card.to_dict()
        own = model.state_dict()
        for key, value in loaded.model.state_dict().items():
            torch.testing.assert_close(value, own[key])
        assert not loaded.model.training

    # -- predict and re-apply ------------------------------------------------------------
    def test_predict_then_reapply_thresholds_without_the_network(self, saved: Path) -> None:
        image, _ = blobs()
        prediction = predict(image, saved, CPU)
        assert prediction.labels.shape == image.shape
        assert prediction.labels.dtype == np.uint16
        assert len(prediction.raw) == 1
        assert prediction.n_objects == len(np.unique(prediction.labels[prediction.labels > 0]))
        same = reapply(prediction, prediction.params.post)
        np.testing.assert_array_equal(same.labels, prediction.labels)
        spec = family_spec(self.family)
        strict = replace(prediction.params.post, **{spec.main_threshold: 1.0})
        nothing = reapply(prediction, strict)
        assert nothing.labels.shape == image.shape and nothing.n_objects == 0
        assert nothing.params.post == strict

    # -- train ---------------------------------------------------------------------------
    def test_one_training_step_changes_the_weights(self) -> None:
        from napari_cellseg.training.datasets import CropDataset
        from napari_cellseg.training.losses import build_loss
        from napari_cellseg.training.steps import Stepper, make_optimizer

        model, card = self.build()
        image, labels = blobs()
        x = np.repeat(image[None].astype(np.float32) / 255.0, card.input_channels, axis=0)
        dataset = CropDataset(
            [(x, labels)],
            family=self.family,
            outputs=card.outputs,
            patch_size=32,
            samples_per_epoch=2,
            augment=None,
            seed=0,
        )
        collate = family_part(self.family, "training").collate
        images, targets = collate([dataset[0], dataset[1]])
        params = TrainParams(family=self.family, batch_size=2, samples_per_epoch=2)
        optimizer = make_optimizer(model, params)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model.train()
        stepper = Stepper(
            model,
            self.family,
            torch.device("cpu"),
            build_loss(params.loss),
            optimizer,
            torch.amp.GradScaler("cuda", enabled=False),
            False,
            torch.float16,
            params.grad_clip,
        )
        loss = stepper.step(images, targets)
        assert math.isfinite(loss)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed
