"""Fine-tuning on images the base learned the other way round warns, and says which way."""

from __future__ import annotations

import pytest

from napari_cellseg.events import Notice, drain
from napari_cellseg.models import read_card
from napari_cellseg.params import TrainParams
from napari_cellseg.training.loop import iter_train
from tiny_models import TINY_UNET, sample_folder, save_tiny_learned


@pytest.fixture(scope="module")
def fluo_base(tmp_path_factory):
    return save_tiny_learned(tmp_path_factory.mktemp("base") / "fluo.safetensors")


@pytest.mark.parametrize("invert", [False, True])
def test_brightfield_fine_tune_of_a_fluorescence_base_warns_unless_inverted(
    tmp_path, fluo_base, invert
) -> None:
    data = sample_folder(tmp_path / "data", "dsb_brightfield", "dsb_he")
    val = sample_folder(tmp_path / "val", "dsb_fluorescence")
    params = TrainParams(
        builder_args=TINY_UNET, epochs=1, batch_size=2, patch_size=64, samples_per_epoch=2,
        device="cpu", invert=invert,
    )  # fmt: skip
    out = tmp_path / "tuned.safetensors"
    events: list = []
    drain(iter_train([data], out, params, init=fluo_base, val=[val]), events.append)
    said = [e.message for e in events if isinstance(e, Notice) and "Invert" in e.message]
    if invert:  # flipped, the corrected images are what the base learned
        assert said == []
        manifest = read_card(out).provenance["data_manifest"]
        assert [e.get("polarity") for e in manifest] == ["bright", "bright", None]  # val last
    else:
        assert len(said) == 1 and said[0].startswith("2 of the 2 training images look like dark")
        assert "turn Invert on" in said[0]
