"""A warning that every file of a batch gets is said once, then counted."""

from __future__ import annotations

import torch
from batch_helpers import PARAMS, disk_image, write_png

from napari_cellseg.batch import iter_batch
from napari_cellseg.events import Notice
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET


def test_the_same_warning_for_many_files_is_said_once_then_counted(tmp_path) -> None:
    torch.manual_seed(0)
    manifest = [{"name": f"i{k}", "role": "train", "polarity": "bright"} for k in range(5)]
    card = ModelCard.for_model("unet", TINY_UNET, provenance={"data_manifest": manifest})
    weights = save_weights(build_model("unet", **TINY_UNET), card, tmp_path / "fluo.safetensors")
    for i in range(3):  # dark disks on a bright background: the other way round
        write_png(tmp_path / "in" / f"dark{i}.png", 255 - disk_image(i))
    write_png(tmp_path / "in" / "bright.png", disk_image(9))  # as the model learned
    events = list(iter_batch(tmp_path / "in", tmp_path / "out", weights, PARAMS))
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    hints = [w for w in warnings if "turn Invert on" in w]
    assert len(hints) == 1 and hints[0].startswith("dark")
    assert [w for w in warnings if w.startswith("2 more file(s) had the warning dark")]
    assert not [w for w in warnings if w.startswith("bright")]
