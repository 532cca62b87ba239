"""The model families: one :class:`FamilySpec` per family in the explicit table :data:`FAMILIES`.

A family is one table entry plus one module per layer: the **models** module (builder, card
conventions, architecture inference for foreign files), the **inference** module (device
preparation, the tile loop of one plane, conversion of the network output to instances) and
the **training** module (targets, collate, the loss of one step). The spec names those modules
by dotted path and :func:`family_part` imports them only when asked, so this module (floor 1,
below :mod:`napari_cellseg.params`) imports nothing heavy and no floor imports upwards. A
module object may stand in for a dotted path (tests add a toy family that way).

>>> family_spec("unet").head_arg, family_spec("maskrcnn").main_threshold
('classes', 'score_threshold')
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from napari_cellseg.errors import CellsegError

Layer = Literal["models", "inference", "training"]
Grid = Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class FamilySpec:
    """Everything that makes a model family what it is.

    Attributes
    ----------
    name : str
        The family's name in model cards, on the command line and in the widgets.
    title : str
        Human-readable name (model card summaries).
    models, inference, training : str or module
        The family's module on each layer (dotted path, imported lazily by
        :func:`family_part`). See :func:`family_part` for what each must define.
    builder : str
        Name of the builder function in the ``models`` module; its keyword arguments are
        what a model card stores as ``builder_args``.
    default_builder_args : dict
        Builder arguments when training from scratch without any.
    head_arg : str
        The builder argument that sets the number of outputs (a fine-tune that changes it
        re-initialises the head).
    train_defaults : dict
        Optimiser, learning rate, weight decay and schedule when
        :class:`~napari_cellseg.params.TrainParams` leaves them as ``None``.
    thresholds : tuple of str
        The :class:`~napari_cellseg.params.PostprocessParams` thresholds the family uses
        (the Segment dock shows only these; ranges and defaults are the params' own).
    main_threshold : str
        The threshold ``cellseg predict --threshold`` sets.
    tuning_grids : tuple of (frozenset of str, dict)
        Candidate threshold values for ``cellseg tune``: the first grid whose output names
        are all among the card's outputs is used. Each grid holds the library defaults.
    foreign_normalisation : dict
        The input normalisation assumed for a weight file without our model card.
    probability_map : bool
        Whether the network output is a probability map a user can keep.
    boxes : bool
        Whether the objects come with boxes and scores worth showing.
    """

    name: str
    title: str
    models: str | ModuleType
    inference: str | ModuleType
    training: str | ModuleType
    builder: str
    default_builder_args: Mapping[str, Any]
    head_arg: str
    train_defaults: Mapping[str, Any]
    thresholds: tuple[str, ...]
    main_threshold: str
    tuning_grids: tuple[tuple[frozenset[str], Grid], ...]
    foreign_normalisation: Mapping[str, Any] = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8}
    )
    probability_map: bool = False
    boxes: bool = False

    def tuning_grid(self, outputs: list[str] | tuple[str, ...]) -> dict[str, tuple[float, ...]]:
        """The candidate values for a model of this family with ``outputs``."""
        for needs, grid in self.tuning_grids:
            if needs <= set(outputs):
                return dict(grid)
        raise CellsegError(f"no tuning grid of the {self.name} family fits outputs {outputs}")


FAMILIES: dict[str, FamilySpec] = {
    "unet": FamilySpec(
        name="unet",
        title="U-Net",
        models="napari_cellseg.models.unet",
        inference="napari_cellseg.inference.unet_strategy",
        training="napari_cellseg.training.unet_steps",
        builder="build_unet",
        default_builder_args={"encoder_name": "resnet34", "in_channels": 3, "classes": 3},
        head_arg="classes",
        train_defaults={
            "optimizer": "adamw",
            "learning_rate": 1e-3,
            "weight_decay": 1e-4,
            "schedule": "cosine",
        },
        thresholds=("prob_threshold", "boundary_threshold"),
        main_threshold="prob_threshold",
        tuning_grids=(
            # background/interior/boundary: seeds need P(interior) > prob and P(boundary) < boundary
            (
                frozenset({"interior", "boundary"}),
                {
                    "prob_threshold": (0.4, 0.5, 0.6, 0.7, 0.8),
                    "boundary_threshold": (0.01, 0.02, 0.05, 0.1, 0.3, 0.5),
                    "min_size": (10, 30, 50),
                },
            ),
            # foreground only: markers are distance-transform peaks
            (
                frozenset(),
                {
                    "prob_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
                    "min_distance": (2, 3, 5, 8),
                    "min_size": (10, 30, 50),
                },
            ),
        ),
        foreign_normalisation={"method": "percentile", "low": 1.0, "high": 99.8},
        probability_map=True,
    ),
    "maskrcnn": FamilySpec(
        name="maskrcnn",
        title="Mask R-CNN",
        models="napari_cellseg.models.maskrcnn",
        inference="napari_cellseg.inference.maskrcnn_strategy",
        training="napari_cellseg.training.maskrcnn_steps",
        builder="build_maskrcnn",
        default_builder_args={"backbone": "resnet50", "variant": "v1", "num_classes": 2},
        head_arg="num_classes",
        train_defaults={
            "optimizer": "sgd",
            "learning_rate": 0.005,
            "weight_decay": 5e-4,
            "schedule": "step",
        },
        thresholds=("score_threshold", "mask_threshold", "nms_iou"),
        main_threshold="score_threshold",
        tuning_grids=(
            (
                frozenset(),
                {
                    "score_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
                    "mask_threshold": (0.4, 0.5, 0.6),
                    "min_size": (10, 30),
                    # crowded nuclei: a stricter mask-NMS drops duplicate half-masks
                    "nms_iou": (0.3, 0.5),
                },
            ),
        ),
        foreign_normalisation={"method": "dtype-range"},
        boxes=True,
    ),
}
"""The model families, in the order they are offered (U-Net first: the default)."""


def family_names() -> list[str]:
    """The families' names in table order (``unet``, ``maskrcnn``)."""
    return list(FAMILIES)


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``.

    Raises
    ------
    CellsegError
        If there is no such family (the message lists the known ones).
    """
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(FAMILIES))
        raise CellsegError(f"unknown model family {name!r}; choose one of: {known}") from None


def family_part(family: str | FamilySpec, layer: Layer) -> ModuleType:
    """The module of ``family`` on ``layer``, imported on first use.

    The ``models`` module defines the builder named by ``FamilySpec.builder`` and
    ``default_outputs(builder_args)``, ``input_channels(builder_args)``,
    ``architecture(builder_args)``, ``EXPECTED_KEYS``, ``claims_state_dict(keys)`` and
    ``infer_builder_args(state, path)``. The ``inference`` module defines
    ``prepare_model(model, device)``, ``tile_geometry(card, tile_size, overlap)``,
    ``run_tiles(runner, x, batches, overlap, params, checkpoint, message)`` (a generator
    returning a plane's raw output), ``to_instances(card, output, shape, post)`` and
    ``output_shape(output, labels)``; it may define ``even_tiles(card)`` (even tile plans
    whose sides are multiples of what it returns) and ``run_planes(runner, xs, overlap,
    params, checkpoint, message)`` (planes of one tile each through the network together, a
    generator returning their raw outputs). The ``training`` module defines
    ``check_outputs(outputs)``, ``crop_target(labels, outputs, inner)``, ``collate(batch)``
    and ``loss(model, images, targets, loss_fn, device)``; to train on images with a checked
    region (``regions/<name>.tif``) ``crop_target`` also takes ``region=`` (bool, the crop's
    size) and may come with ``region_input(image, region)`` (the patch's image as the model
    should see it).
    """
    spec = family if isinstance(family, FamilySpec) else family_spec(family)
    where = getattr(spec, layer)
    return importlib.import_module(where) if isinstance(where, str) else where
