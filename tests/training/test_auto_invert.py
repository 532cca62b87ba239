"""A fine-tune left to choose (``TrainParams.invert=None``) inverts images the base learned
the other way round, unless the base scores higher on the validation images as they are."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_cellseg.cli.app import build_parser
from napari_cellseg.events import Notice, drain
from napari_cellseg.models import ModelCard, read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.auto_invert import choose_invert, inverted_card
from napari_cellseg.training.loop import iter_train
from tiny_models import TINY_UNET, sample_folder, save_tiny_learned

DOTS = np.zeros((1, 64, 64), np.float32)
DOTS[0, 10:18, 10:18] = DOTS[0, 40:48, 30:38] = 1.0  # bright objects on a dark background


def _card(way: str | None = "bright") -> ModelCard:
    manifest = [{"role": "train", "polarity": way}] * 6 if way else []
    return ModelCard.for_model("unet", TINY_UNET, provenance={"data_manifest": manifest})


def _read(image: np.ndarray):
    """A reader that gives ``image`` as the base's card normalises it (inverted or not)."""

    def read(pair, card):
        return 1.0 - image if card.normalisation.get("invert") else image

    return read


def _judge(plain: float, flipped: float):
    """The base's validation DSB AP: ``plain`` as the images are, ``flipped`` inverted."""
    seen: list[bool] = []

    def judge(card):
        seen.append(bool(card.normalisation.get("invert")))
        return {"dsb_ap": flipped if seen[-1] else plain, "pixel_dice": 0.5}

    judge.seen = seen
    return judge


def test_dark_images_for_a_bright_base_invert_when_the_base_scores_no_worse_inverted() -> None:
    judge = _judge(plain=0.01, flipped=0.10)
    flip, said, scored = choose_invert(_card("bright"), ["a", "b", "c"], judge, _read(1.0 - DOTS))
    assert flip is True and judge.seen == [False, True]
    assert scored == {"dsb_ap": 0.10, "pixel_dice": 0.5}  # the baseline: the inverted base
    assert said.startswith("3 of the 3 training images look like dark objects")
    assert "0.100 DSB AP on the validation images inverted, 0.010 as they are" in said
    assert "Invert is on for this fine-tune" in said and "--no-invert" in said


def test_invert_stays_off_when_the_base_scores_higher_as_the_images_are() -> None:
    """The EM case: a histogram read 'dark', but the model knows better (0.031 > 0.007)."""
    flip, said, scored = choose_invert(
        _card("bright"), ["a"], _judge(0.031, 0.007), _read(1.0 - DOTS)
    )
    assert flip is False and scored["dsb_ap"] == 0.031
    assert "but the base model scores 0.007 DSB AP" in said and "Invert stays off" in said


def test_a_tie_inverts_and_without_validation_images_the_images_decide() -> None:
    assert choose_invert(_card("bright"), ["a"], _judge(0.0, 0.0), _read(1.0 - DOTS))[0]
    flip, said, scored = choose_invert(_card("bright"), ["a"], None, _read(1.0 - DOTS))
    assert flip is True and "DSB AP" not in said and scored is None


@pytest.mark.parametrize("way", ["bright", None])
def test_nothing_is_read_or_said_when_the_base_learned_these_images_or_does_not_say(way):
    def refuse(pair, card):
        raise AssertionError("no image should be read for a card without polarity")

    read = _read(DOTS) if way else refuse
    judge = _judge(0.0, 0.0)
    assert choose_invert(_card(way), ["a", "b"], judge, read) == (False, None, None)
    assert judge.seen == []  # no validation pass either


def test_a_base_whose_values_cannot_invert_is_left_alone() -> None:
    raw = replace(_card("bright"), normalisation={"method": "none"})

    def refuse(pair, card):
        raise AssertionError("no image should be read when nothing can be inverted")

    assert choose_invert(raw, ["a"], _judge(0.0, 0.5), refuse) == (False, None, None)


def test_a_base_that_learned_dark_objects_inverts_bright_ones() -> None:
    flip, said, _ = choose_invert(_card("dark"), ["a", "b"], _judge(0.0, 0.2), _read(DOTS))
    assert flip and said.startswith("2 of the 2 training images look like bright objects")


def test_inverted_card_flips_the_normalisation_only() -> None:
    card = _card()
    once = inverted_card(card)
    assert once.normalisation == {**card.normalisation, "invert": True}
    assert once.provenance == card.provenance and once.family == card.family


def test_a_brightfield_fine_tune_of_a_fluorescence_base_inverts_by_default(tmp_path) -> None:
    base = save_tiny_learned(tmp_path / "fluo.safetensors")
    data = sample_folder(tmp_path / "data", "dsb_brightfield", "dsb_he")
    val = sample_folder(tmp_path / "val", "dsb_brightfield")
    params = TrainParams(
        builder_args=TINY_UNET, epochs=1, batch_size=2, patch_size=64, samples_per_epoch=2,
        device="cpu",
    )  # fmt: skip
    assert params.invert is None
    out = tmp_path / "tuned.safetensors"
    events: list = []
    drain(iter_train([data], out, params, init=base, val=[val]), events.append)
    said = [e for e in events if isinstance(e, Notice) and "Invert" in e.message]
    assert len(said) == 1 and said[0].level == "warning"
    assert "Invert is on for this fine-tune" in said[0].message
    card = read_card(out)
    assert card.normalisation["invert"] is True  # its predictions invert by themselves
    manifest = card.provenance["data_manifest"]
    assert [e.get("polarity") for e in manifest] == ["bright", "bright", None]  # as fed
    assert card.provenance["training"]["invert"] is True  # resolved, as a resume reads it


def test_the_cli_says_invert_on_off_or_leaves_it_to_the_fine_tune() -> None:
    parser = build_parser()
    common = ["train", "--data", "d", "--out", "o.safetensors"]
    assert parser.parse_args(common).invert is None
    assert parser.parse_args([*common, "--invert"]).invert is True
    assert parser.parse_args([*common, "--no-invert"]).invert is False
