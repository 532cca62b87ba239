"""Threshold tuning: a network whose output we control, two cells joined by a weak boundary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from event_helpers import collect as run
from known_output_model import known_model, two_cells
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Progress
from napari_cellseg.inference import predict
from napari_cellseg.models.card import ModelCard
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PostprocessParams, PredictParams
from napari_cellseg.training.tuning import (
    candidates,
    default_grid,
    iter_tune_postprocess,
    tuned_card,
)
from napari_cellseg.training.validation import ValidationImage


def images(n: int = 2) -> list[ValidationImage]:
    image, truth = two_cells()
    return [ValidationImage(f"cells{i}", image, "YX", truth) for i in range(n)]


CPU = PredictParams(device="cpu", tile_size=64, overlap=0)


def test_the_default_boundary_threshold_merges_the_cells() -> None:
    model = known_model()
    image, _ = two_cells()
    merged = predict(image, model, CPU).labels
    split = predict(image, model, CPU.with_post(boundary_threshold=0.1)).labels
    assert merged.max() == 1
    assert split.max() == 2


def test_tuning_finds_the_threshold_that_splits_them() -> None:
    grid = {"boundary_threshold": [0.1, 0.5], "min_size": [10]}
    result, events = run(iter_tune_postprocess(images(2), known_model(), params=CPU, grid=grid))
    assert result.changed == {"boundary_threshold": 0.1}
    assert result.post.boundary_threshold == pytest.approx(0.1)
    assert result.base_score == 0.0  # one object over two cells matches neither at IoU 0.5
    assert result.score > 0.8
    assert (result.n_images, result.n_candidates) == (2, 2)
    assert result.ranking[0]["dsb_ap"] == result.score
    assert all(isinstance(e, Progress) for e in events)
    per_image = [e for e in events if e.stage == "tuning"]
    assert [(e.done, e.total) for e in per_image] == [(1, 2), (2, 2)]
    tiles = [e for e in events if e.stage == "tiles"]
    assert len(tiles) >= 2 and events[-1] is per_image[-1]  # tiles first, then the image


def test_a_tuned_card_is_what_inference_uses_when_no_thresholds_are_given() -> None:
    grid = {"boundary_threshold": [0.1, 0.5]}
    model = known_model()
    result, _ = run(iter_tune_postprocess(images(1), model, params=CPU, grid=grid))
    card = tuned_card(model.card, result, "my cells")
    assert card.postprocess == {"boundary_threshold": 0.1}
    tuning = card.provenance["postprocess_tuning"]
    assert tuning["data"] == "my cells" and tuning["score"] > tuning["base_score"]
    assert "thresholds:    boundary_threshold 0.1 (tuned on my cells)" in card.summary()
    assert ModelCard.from_json(card.to_json()).postprocess == card.postprocess

    tuned = LoadedModel(model.model, card, model.path, "test")
    image, _ = two_cells()
    assert predict(image, tuned).labels.max() == 2  # no params: the card's thresholds
    assert predict(image, tuned, CPU).labels.max() == 2  # params without post: the same
    explicit = replace(CPU, post=PostprocessParams())
    assert predict(image, tuned, explicit).labels.max() == 1  # thresholds given win


def test_nothing_better_keeps_the_current_setting() -> None:
    model = known_model(boundary_threshold=0.1)
    result, _ = run(
        iter_tune_postprocess(images(1), model, params=CPU, grid={"boundary_threshold": [0.5]})
    )
    assert result.changed == {}
    assert result.score == result.base_score
    assert tuned_card(model.card, result, "x").postprocess == {"boundary_threshold": 0.1}


def test_candidates_start_with_the_base_and_skip_duplicates() -> None:
    base = PostprocessParams(prob_threshold=0.5)
    out = candidates(base, {"prob_threshold": [0.5, 0.7], "min_size": [10, 30]})
    assert out[0] == base
    assert len(out) == len(set(out)) == 4
    assert all(isinstance(p.min_size, int) for p in out)


def test_bad_grids_and_no_images_are_refused() -> None:
    with pytest.raises(CellsegError, match="cannot tune threshold"):
        candidates(PostprocessParams(), {"threshold": [0.5]})
    with pytest.raises(CellsegError, match="no candidate values for min_size"):
        candidates(PostprocessParams(), {"min_size": []})
    with pytest.raises(CellsegError, match="out of range|between 0 and 1"):
        candidates(PostprocessParams(), {"prob_threshold": [1.5]})
    with pytest.raises(CellsegError, match="no labelled images"):
        run(iter_tune_postprocess([], known_model()))


def test_tuning_stops_when_asked() -> None:
    gen = iter_tune_postprocess(images(3), known_model(), params=CPU, should_stop=lambda: True)
    with pytest.raises(CancelledError):
        next(gen)


def test_tuning_stops_inside_an_image_at_its_tiles() -> None:
    polls: list[int] = []

    def stop_at_the_second_poll() -> bool:
        polls.append(1)
        return len(polls) >= 2  # the first poll is before the image, the next inside it

    gen = iter_tune_postprocess(
        images(1), known_model(), params=CPU, should_stop=stop_at_the_second_poll
    )
    events = []
    with pytest.raises(CancelledError):
        for event in gen:
            events.append(event)
    assert all(e.stage != "tuning" for e in events)  # stopped before the image was scored


def test_default_grids_follow_the_model_kind() -> None:
    three = ModelCard.for_model("unet", {"classes": 3})
    one = ModelCard.for_model("unet", {"classes": 1})
    rcnn = ModelCard.for_model("maskrcnn", {"backbone": "resnet18"})
    assert "boundary_threshold" in default_grid(three)
    assert "min_distance" in default_grid(one) and "boundary_threshold" not in default_grid(one)
    assert "score_threshold" in default_grid(rcnn)
    defaults = PostprocessParams()
    for card in (three, one, rcnn):  # the defaults are always among the candidates
        for name, values in default_grid(card).items():
            assert getattr(defaults, name) in values


def test_a_plane_too_large_to_hold_is_refused_with_advice(monkeypatch) -> None:
    from napari_cellseg.inference import api
    from napari_cellseg.params import BlockOptions

    monkeypatch.setattr(api, "DEFAULT_BLOCKS", BlockOptions(block_pixels=32 * 32))
    with pytest.raises(CellsegError, match="cells0: a 64×64 plane is too large .* tune on crops"):
        run(iter_tune_postprocess(images(1), known_model(), params=CPU))


def test_a_demo_models_tuned_copy_never_goes_into_the_package(tmp_path) -> None:
    from napari_cellseg.models import list_bundled_weights
    from napari_cellseg.training.tuning import tuned_copy_path

    demo = list_bundled_weights()[0]
    assert tuned_copy_path(demo, tmp_path) == tmp_path / f"{demo.stem}-tuned.safetensors"
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"x")
    assert tuned_copy_path(mine) == tmp_path / "mine-tuned.safetensors"  # beside the user's
