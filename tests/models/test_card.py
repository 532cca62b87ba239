from __future__ import annotations

import json

import pytest

from napari_cellseg.models.card import ModelCard, ModelCardError


def test_card_round_trips_through_json() -> None:
    card = ModelCard.for_model(
        "unet",
        {"encoder_name": "resnet18", "in_channels": 1, "classes": 3},
        provenance={"epochs": 3, "metrics": {"dsb_ap": 0.5}, "history": [{"loss": 1.0}]},
    )
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.outputs == ["background", "interior", "boundary"]
    assert again.output_activation == "softmax"
    assert again.channel_handling == "grey"
    assert {"torch", "torchvision", "python"} <= set(again.library_versions)


def test_card_defaults_for_each_unet_head() -> None:
    one = ModelCard.for_model("unet", {"classes": 1})
    two = ModelCard.for_model("unet", {"classes": 2})
    assert (one.outputs, one.output_activation) == (["foreground"], "sigmoid")
    assert (two.outputs, two.output_activation) == (["background", "foreground"], "softmax")


def test_card_summary_names_family_architecture_and_metrics() -> None:
    card = ModelCard.for_model(
        "maskrcnn",
        {"backbone": "resnet18", "num_classes": 2},
        provenance={
            "data_manifest": [{"dataset": "dsb2018", "name": "a"}],
            "metrics": {"dsb_ap": 0.512},
        },
    )
    text = card.summary()
    assert "Mask R-CNN (resnet18-v1)" in text
    assert "trained on:    1 images (dsb2018)" in text
    assert "dsb_ap 0.512" in text


def test_card_keeps_unknown_fields_from_newer_versions() -> None:
    data = ModelCard.for_model("unet", {}).to_dict()
    data["future_field"] = 1
    card = ModelCard.from_dict(data)
    assert card.provenance["unknown_card_fields"] == {"future_field": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        (json.dumps([1, 2]), "not a JSON object"),
        (json.dumps({"family": "unet"}), "lacks builder_args, input_channels"),
        (
            json.dumps({"family": "yolo", "builder_args": {}, "input_channels": 3}),
            "unknown model family",
        ),
        (  # every prediction would fail: refused when the file is read (info --check too)
            json.dumps(
                {
                    "family": "unet",
                    "builder_args": {},
                    "input_channels": 3,
                    "normalisation": {"method": "percentile", "low": 99, "high": 1},
                }
            ),
            "normalisation is invalid: percentile normalisation needs 0 <= low < high",
        ),
    ],
)
def test_bad_cards_are_clear(text: str, message: str) -> None:
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_json(text)


def test_card_postprocess_values_are_the_models_thresholds() -> None:
    card = ModelCard.for_model("unet", {"classes": 3}, postprocess={"prob_threshold": 0.75})
    post = card.post_params()
    assert post.prob_threshold == 0.75 and post.boundary_threshold == 0.5  # rest: defaults
    assert ModelCard.from_json(card.to_json()).postprocess == {"prob_threshold": 0.75}
    assert "thresholds:    prob_threshold 0.75" in card.summary()
    old = json.loads(card.to_json())
    del old["postprocess"]  # a card written before the field existed
    assert ModelCard.from_dict(old).post_params() == ModelCard.for_model("unet", {}).post_params()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"threshold": 0.5}, "unknown post-processing values threshold"),
        ({"prob_threshold": 1.5}, "prob_threshold must be between 0 and 1"),
        ({"min_size": "ten"}, "min_size='ten' must be a number"),
        ({"fill_holes": 1}, "fill_holes=1 must be true or false"),
        ({"min_size": True}, "min_size=True must be a number"),
    ],
)
def test_bad_postprocess_values_are_refused_when_the_card_is_read(values, message) -> None:
    data = json.loads(ModelCard.for_model("unet", {}).to_json())
    data["postprocess"] = values
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_json(json.dumps(data))


def test_the_object_diameter_round_trips_and_old_cards_default() -> None:
    import pytest

    from napari_cellseg.models.card import DEFAULT_OBJECT_DIAMETER, ModelCard, ModelCardError

    args = {"encoder_name": "resnet18", "in_channels": 3, "classes": 3}
    card = ModelCard.for_model(
        "unet", args, object_diameter=24, object_diameter_source="median of masks"
    )
    again = ModelCard.from_dict(card.to_dict())
    assert again.object_diameter == 24.0 and again.object_diameter_source == "median of masks"
    old = card.to_dict()
    del old["object_diameter"], old["object_diameter_source"]  # a card from before the field
    assert ModelCard.from_dict(old).reference_diameter() == DEFAULT_OBJECT_DIAMETER
    for bad in (1.0, 501, "big", True):
        with pytest.raises(ModelCardError, match="object_diameter"):
            ModelCard.for_model("unet", args, object_diameter=bad)
    assert ModelCard.from_dict(old).default_diameter is None  # cards from before: auto
    tuned = ModelCard.from_dict({**card.to_dict(), "default_diameter": 150})
    assert tuned.default_diameter == 150.0 and "unless told" in tuned.summary()
    for bad in (1.0, 501, "big", True):
        with pytest.raises(ModelCardError, match="default_diameter"):
            ModelCard.for_model("unet", args, default_diameter=bad)
