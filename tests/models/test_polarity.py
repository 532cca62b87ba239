"""Image polarity (bright objects on dark, or dark on bright) and the hint it gives."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import ModelCard
from napari_cellseg.models.normalise import to_model_input
from napari_cellseg.models.polarity import (
    image_hint,
    polarity,
    polarity_hint,
    with_polarity,
)
from tiny_models import TINY_UNET

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def _plane(name: str) -> np.ndarray:
    return np.asarray(read_image(sample_data_dir() / "images" / f"{name}.png").data)


def _card(polarities, **kw) -> ModelCard:
    manifest = [{"name": f"i{k}", "role": "train", "polarity": p} for k, p in enumerate(polarities)]
    return ModelCard.for_model("unet", TINY_UNET, provenance={"data_manifest": manifest}, **kw)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("dsb_fluorescence", "bright"), ("dsb_brightfield", "dark"), ("dsb_he", "dark")],
)
def test_real_samples_read_the_way_their_nuclei_are(name, expected) -> None:
    x = to_model_input(
        _plane(name), input_channels=3, channel_handling="rgb", normalisation=PERCENTILE
    )
    assert polarity(np.asarray(x)) == expected
    assert polarity(1.0 - np.asarray(x)) != expected  # flipped: the other way


def test_large_images_are_read_on_a_subsample_with_the_same_answer() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(0.1, 0.02, (1500, 1500)).astype(np.float32)
    for y, x in rng.integers(0, 1480, (400, 2)):
        big[y : y + 12, x : x + 12] = 0.9
    assert polarity(big) == "bright" and polarity(1.0 - big) == "dark"


def test_manifest_keeps_validation_entries_as_they_are() -> None:
    dots = np.zeros((3, 20, 20), np.float32)
    dots[:, 5:8, 5:8] = 1.0
    manifest = [
        {"name": "v", "role": "validation"},
        {"name": "a", "role": "train"},
        {"name": "b", "role": "train"},
    ]
    out = with_polarity(manifest, [dots, 1.0 - dots])
    assert [e.get("polarity") for e in out] == [None, "bright", "dark"]
    assert "polarity" not in manifest[1]  # the input is not changed


def test_learned_counts_training_images_and_a_kept_base_counts_its_base() -> None:
    card = _card(["bright", "bright", "unclear"])
    assert card.learned_polarity() == {"bright": 2, "dark": 0, "unclear": 1}
    assert ModelCard.for_model("unet", TINY_UNET).learned_polarity() is None  # not recorded
    kept = ModelCard.for_model(
        "unet",
        TINY_UNET,
        provenance={
            "kept_base": True,
            "data_manifest": [{"role": "train", "polarity": "dark"}],
            "base_provenance": card.provenance,
        },
    )
    assert kept.learned_polarity() == {"bright": 2, "dark": 0, "unclear": 1}


def test_hint_names_the_fix_for_each_setting_of_invert() -> None:
    card = _card(["bright"] * 10)
    on = polarity_hint(card, "dark", inverted=False)
    assert "dark objects on a bright background" in on and "turn Invert on" in on
    assert "10 of its 10" in on
    off = polarity_hint(card, "dark", inverted=True)
    assert "turn Invert off" in off
    assert polarity_hint(card, "bright", inverted=False) is None
    assert polarity_hint(card, "unclear", inverted=False) is None


def test_no_hint_when_the_model_learned_both_ways_or_nothing_clear() -> None:
    assert polarity_hint(_card(["bright"] * 18 + ["dark"] * 2), "dark", False) is None  # 10 %
    assert polarity_hint(_card(["bright"] * 40 + ["dark"]), "dark", False) is not None  # 2.4 %
    assert polarity_hint(_card(["unclear"] * 3), "dark", False) is None


def test_image_hint_reads_the_plane_as_the_network_gets_it() -> None:
    fluo_model = _card(["bright"] * 5, normalisation=PERCENTILE)
    brightfield, fluorescence = _plane("dsb_brightfield"), _plane("dsb_fluorescence")
    assert "turn Invert on" in image_hint(brightfield, fluo_model)
    assert image_hint(brightfield, fluo_model, invert=True) is None  # flipped: bright now
    assert image_hint(fluorescence, fluo_model) is None
    assert "turn Invert off" in image_hint(fluorescence, fluo_model, invert=True)
    # a model fine-tuned with Invert flips by itself: brightfield is what it learned
    inverting = _card(["bright"] * 5, normalisation={**PERCENTILE, "invert": True})
    assert image_hint(brightfield, inverting) is None
    assert "turn Invert on" in image_hint(fluorescence, inverting)
    assert image_hint(brightfield, ModelCard.for_model("unet", TINY_UNET)) is None


def test_card_summary_counts_the_training_images_each_way() -> None:
    summary = _card(["bright", "dark", "bright"]).summary()
    assert "trained on:    3 images" in summary
    assert "objects 2 bright, 1 dark (training images)" in summary
    assert "objects" not in ModelCard.for_model("unet", TINY_UNET).summary()
