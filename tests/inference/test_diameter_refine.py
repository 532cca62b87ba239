"""``diameter="auto"``'s second step: the scale where the model is surest of its objects."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from known_output_model import known_model
from napari_cellseg.events import Notice, drain
from napari_cellseg.inference import diameter as diameter_module
from napari_cellseg.inference.diameter import (
    MAX_REFINE_MOVES,
    REFINE_STEP,
    iter_choose_scale,
    iter_refine_scale,
)
from napari_cellseg.inference.object_size import object_confidence
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PredictParams

REFERENCE = 20.0
PARAMS = PredictParams(device="cpu", axes="YX")


def squares(diameter: float, side: int = 512) -> np.ndarray:
    """Labels of 9 squares whose equivalent diameter is ``diameter`` px."""
    edge = max(2, round(diameter * math.sqrt(math.pi) / 2))
    labels = np.zeros((side, side), np.uint16)
    step = side // 4
    for i in range(3):
        for j in range(3):
            y, x = (i + 1) * step - edge // 2, (j + 1) * step - edge // 2
            labels[y : y + edge, x : x + edge] = 1 + 3 * i + j
    return labels


def script(monkeypatch, confidence, seen=None) -> list[float]:
    """Quick passes that see objects ``seen(scale)`` px (default: the model's size, the
    image is right at every scale) with interior probability ``confidence(scale)``."""
    scales: list[float] = []

    def fake(image, axes, model, quick, scale, should_stop, keep=None, seen_passes=None):
        scales.append(scale)
        yield from ()
        size = seen(scale) if seen else REFERENCE / scale
        probs = np.zeros((3, 8, 8), np.float32)
        probs[0] = 1.0
        probs[:, :4, :4] = np.array([0.0, 1.0, 0.0])[:, None, None] * confidence(scale)
        return SimpleNamespace(labels=squares(size), raw=[probs])

    monkeypatch.setattr(diameter_module, "quick_prediction", fake)
    return scales


def peak_at(best: float):
    """Confidence falling off on both sides of scale ``best`` (log-scale)."""
    return lambda scale: 0.95 - 0.05 * abs(math.log2(scale / best))


def learned_unet() -> LoadedModel:
    model = known_model()
    model.card.object_diameter = REFERENCE
    model.card.object_diameter_source = "training masks: median equivalent diameter per image"
    return model


def test_the_scale_moves_to_where_the_model_is_surest(monkeypatch) -> None:
    start = REFERENCE / 40.0  # objects measured 40 px: ×0.5
    scales = script(monkeypatch, peak_at(start / 2))  # the model is surest at ×0.25
    image = np.zeros((2048, 2048), np.float32)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0))
    assert scale == pytest.approx(start / 2)
    # the start, both neighbours, then on downwards until the confidence falls
    expected = [start, start * REFINE_STEP, start / REFINE_STEP, start / 2, start / 2 / REFINE_STEP]
    assert scales == pytest.approx(expected)


def test_the_scale_stays_when_the_estimate_is_where_the_model_is_surest(monkeypatch) -> None:
    scales = script(monkeypatch, peak_at(0.5))
    image = np.zeros((1024, 1024), np.float32)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0))
    assert scale == pytest.approx(0.5) and len(scales) == 3


def test_moves_are_bounded(monkeypatch) -> None:
    scales = script(monkeypatch, lambda scale: 0.8 + 0.01 * math.log2(scale))  # always higher
    image = np.zeros((1024, 1024), np.float32)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0))
    assert scale == pytest.approx(0.5 * REFINE_STEP**MAX_REFINE_MOVES)
    assert len(scales) == 2 + MAX_REFINE_MOVES


def test_scales_whose_objects_look_far_from_the_models_size_do_not_count(monkeypatch) -> None:
    """Texture that looks 8 px at every scale is not a reason to enlarge the image."""
    scales = script(monkeypatch, lambda scale: 0.6 + 0.1 * scale, seen=lambda scale: 8.0 / scale)
    image = np.zeros((512, 512), np.float32)
    start = REFERENCE / 8.0
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 8.0))
    # at the start the objects look 8 px, 2.5x below the model's 20: nothing is compared
    assert scale == start and scales == [start]


def test_a_mask_rcnn_is_not_refined(monkeypatch) -> None:
    scales = script(monkeypatch, peak_at(0.25))
    card = ModelCard.for_model("maskrcnn", {"num_classes": 2}, object_diameter=REFERENCE)
    card.object_diameter_source = "training masks: median equivalent diameter per image"
    model = LoadedModel(torch.nn.Identity(), card, Path("<fake>"), "test")
    image = np.zeros((1024, 1024), np.float32)
    scale = drain(iter_refine_scale(image, model, PARAMS, REFERENCE, 40.0))
    assert scale == 0.5 and scales == []


def test_auto_reports_the_refined_diameter_and_what_was_measured(monkeypatch) -> None:
    """``iter_choose_scale`` measures the objects (40 px), then refines (surest at ×0.25)."""
    monkeypatch.setattr(diameter_module, "iter_estimate_diameter", lambda *a, **k: _returns(40.0))
    script(monkeypatch, peak_at(0.25))
    image = np.zeros((2048, 2048), np.float32)
    events: list = []
    gen = iter_choose_scale(image, learned_unet(), replace(PARAMS, diameter="auto"))
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            diameter, scale = stop.value
            break
    assert scale == pytest.approx(0.25) and diameter == pytest.approx(80.0)
    said = [e.message for e in events if isinstance(e, Notice)]
    assert said == [
        "estimated object diameter 80 px (objects measured 40 px; the model is surest at 80) "
        "\u2192 rescaled \u00d70.25"
    ]


def test_a_diameter_not_learned_in_training_is_not_refined(monkeypatch) -> None:
    monkeypatch.setattr(diameter_module, "iter_estimate_diameter", lambda *a, **k: _returns(40.0))
    scales = script(monkeypatch, peak_at(0.25))
    model = known_model()
    model.card.object_diameter = REFERENCE  # typed into the card, not measured in training
    image = np.zeros((2048, 2048), np.float32)
    diameter, scale = drain(iter_choose_scale(image, model, replace(PARAMS, diameter="auto")))
    assert (diameter, scale) == (40.0, 0.5) and scales == []


def _returns(value):
    yield from ()
    return value


def test_object_confidence_uses_the_models_object_channel() -> None:
    probs = np.zeros((2, 4, 4), np.float32)
    probs[0] = 1.0
    probs[:, :2, :2] = np.array([0.2, 0.8])[:, None, None]
    assert object_confidence(probs, ["background", "foreground"]) == pytest.approx(0.8)
    assert object_confidence(probs[:1], ["background"]) == pytest.approx(0.8)  # 1 - 0.2
    assert object_confidence(np.ones((1, 4, 4)), ["background"]) is None  # nothing sure
    assert object_confidence(probs, ["a", "b"]) is None


def test_one_side_first_skips_the_smaller_neighbour_when_the_larger_is_surer(monkeypatch) -> None:
    monkeypatch.setattr(diameter_module, "REFINE_BOTH_SIDES", False)
    start = REFERENCE / 40.0
    scales = script(monkeypatch, peak_at(start * 2))  # surest at x1: above the start
    image = np.zeros((2048, 2048), np.float32)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0))
    assert scale == pytest.approx(start * 2)
    expected = [start, start * REFINE_STEP, start * 2, start * 2 * REFINE_STEP]
    assert scales == pytest.approx(expected)  # start / √2 never ran


def test_one_side_first_still_looks_below_when_above_is_no_surer(monkeypatch) -> None:
    monkeypatch.setattr(diameter_module, "REFINE_BOTH_SIDES", False)
    start = REFERENCE / 40.0
    scales = script(monkeypatch, peak_at(start / 2))
    image = np.zeros((2048, 2048), np.float32)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0))
    assert scale == pytest.approx(start / 2)
    expected = [start, start * REFINE_STEP, start / REFINE_STEP, start / 2, start / 2 / REFINE_STEP]
    assert scales == pytest.approx(expected)


@pytest.mark.parametrize(("snap", "starts_at"), [(1.0, 0.5), (1.05, 0.49)])
def test_the_refinement_starts_at_a_scale_the_estimate_ran_when_near(
    monkeypatch, snap, starts_at
) -> None:
    monkeypatch.setattr(diameter_module, "SNAP", snap)
    scales = script(monkeypatch, peak_at(0.5))
    image = np.zeros((1024, 1024), np.float32)
    seen = {0.49: None, 0.3: None}  # scales the size estimate ran (their passes unused here)
    scale = drain(iter_refine_scale(image, learned_unet(), PARAMS, REFERENCE, 40.0, seen=seen))
    assert scales[0] == pytest.approx(starts_at)  # 0.49 is within 5 % of 0.5, 0.3 is not
    assert scale == pytest.approx(starts_at)


def test_a_quick_pass_at_a_scale_already_run_is_not_run_again(monkeypatch) -> None:
    from napari_cellseg.inference import planes

    runs: list[float] = []

    def fake_planes(crop, model, run, *, should_stop=None, scale=1.0):
        runs.append(scale)
        yield from ()
        return SimpleNamespace(labels=squares(REFERENCE), raw=[np.zeros((3, 8, 8))], device="cpu")

    monkeypatch.setattr(planes, "iter_predict_planes", fake_planes)
    image = np.zeros((256, 256), np.float32)
    seen: dict = {}
    quick = diameter_module.quick_params(PARAMS, learned_unet().card)
    for scale in (1.0, 0.5, 1.0, 0.5):
        drain(
            diameter_module.quick_prediction(
                image, "YX", learned_unet(), quick, scale, None, None, seen
            )
        )
    assert runs == [1.0, 0.5] and sorted(seen) == [0.5, 1.0]
