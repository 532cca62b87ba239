"""A fine-tuned model's card keeps its lineage: every ancestor's identity, history and data."""

from __future__ import annotations

import json

import pytest

from napari_cellseg.cli.app import main
from napari_cellseg.io.files import sha256_path
from napari_cellseg.io.samples import sample_data_dir
from napari_cellseg.models import ModelCard, load_weights, read_card
from napari_cellseg.models.card import ModelCardError
from napari_cellseg.params import TrainParams
from napari_cellseg.training.loop import fit
from napari_cellseg.training.provenance import with_lineage
from tiny_models import TINY_UNET, save_tiny


def _params(**kw) -> TrainParams:
    base = {
        "family": "unet",
        "builder_args": TINY_UNET,
        "epochs": 1,
        "batch_size": 2,
        "patch_size": 64,
        "samples_per_epoch": 2,
        "val_fraction": 0.0,
        "device": "cpu",
        "seed": 3,
    }
    return TrainParams(**{**base, **kw})


def test_repeated_fine_tunes_keep_every_ancestor(tmp_path, capsys) -> None:
    base = save_tiny("unet", tmp_path / "base.safetensors")
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    fit([sample_data_dir()], first, _params(), init=base)
    fit([sample_data_dir()], second, _params(), init=first)
    card = read_card(second)
    assert [a["file"] for a in card.lineage] == ["base.safetensors", "first.safetensors"]
    assert [a["sha256"] for a in card.lineage] == [sha256_path(base), sha256_path(first)]
    ancestor = card.lineage[1]
    first_card = read_card(first)
    assert ancestor["name"] == first_card.name
    assert ancestor["data_manifest"] == first_card.provenance["data_manifest"] != []
    assert ancestor["history"]["epochs"] == 1 and ancestor["history"]["epochs_run"] == 1
    assert ancestor["history"]["init"] == "base.safetensors"
    assert first_card.lineage == card.lineage[:1]  # the parent's own lineage, unchanged
    assert card.lineage[0]["history"]["epochs"] is None  # the base was never trained
    assert load_weights(second).card.lineage == card.lineage  # loads with its weights
    # shown by `cellseg info`
    assert main(["info", str(second)]) == 0
    out = capsys.readouterr().out
    assert "lineage:       1. unet-resnet18 (base.safetensors, sha256 " in out
    assert "(base.safetensors, sha256 " in out and "): no training record" in out
    assert "2. unet-resnet18 (first.safetensors" in out and ": 1 epochs, data: 3 images" in out


def test_lineage_round_trips_and_old_cards_load_without_one(tmp_path) -> None:
    path = save_tiny("unet", tmp_path / "base.safetensors")
    card = with_lineage(ModelCard.for_model("unet", TINY_UNET), path)
    assert len(card.lineage) == 1 and card.lineage[0]["sha256"] == sha256_path(path)
    assert ModelCard.from_json(card.to_json()) == card
    old = json.loads(card.to_json())
    del old["lineage"]  # a card written before lineage was recorded
    assert ModelCard.from_dict(old).lineage == []
    assert "lineage" not in ModelCard.from_dict(old).summary()
    assert read_card(path).lineage == []  # save_tiny writes no lineage: still loads


def test_a_malformed_lineage_is_refused_clearly() -> None:
    data = ModelCard.for_model("unet", TINY_UNET).to_dict()
    data["lineage"] = {"not": "a list"}
    with pytest.raises(ModelCardError, match="'lineage' is not a list of JSON objects"):
        ModelCard.from_dict(data)


def test_a_fine_tuned_card_records_this_runs_libraries_not_the_inits(tmp_path) -> None:
    from dataclasses import replace

    from napari_cellseg.models.weights import save_weights

    base = save_tiny("unet", tmp_path / "base.safetensors")
    loaded = load_weights(base)
    old = {"python": "3.0.0", "torch": "0.1"}
    save_weights(loaded.model, replace(loaded.card, library_versions=old), base)
    out = tmp_path / "tuned.safetensors"
    fit([sample_data_dir()], out, _params(), init=base)
    assert read_card(base).library_versions == old
    assert read_card(out).library_versions == ModelCard.for_model("unet", {}).library_versions
