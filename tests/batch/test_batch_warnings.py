"""A warning that every file of a batch gets is said once, then counted."""

from __future__ import annotations

from batch_helpers import PARAMS, disk_image, write_png

from napari_cellseg.batch import iter_batch
from napari_cellseg.batch.ranking import iter_rank_images
from napari_cellseg.events import Notice, drain
from tiny_models import save_tiny_learned


def _fluo_model_and_folder(tmp_path):
    """A tiny U-Net whose card learned bright objects; 3 dark-on-bright images and 1 bright."""
    weights = save_tiny_learned(tmp_path / "fluo.safetensors")
    for i in range(3):  # dark disks on a bright background: the other way round
        write_png(tmp_path / "in" / f"dark{i}.png", 255 - disk_image(i))
    write_png(tmp_path / "in" / "bright.png", disk_image(9))  # as the model learned
    return weights, tmp_path / "in"


def test_the_same_warning_for_many_files_is_said_once_then_counted(tmp_path) -> None:
    weights, folder = _fluo_model_and_folder(tmp_path)
    events = list(iter_batch(folder, tmp_path / "out", weights, PARAMS))
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    hints = [w for w in warnings if "turn Invert on" in w]
    assert len(hints) == 1 and hints[0].startswith("dark")
    assert [w for w in warnings if w.startswith("2 more file(s) had the warning dark")]
    assert not [w for w in warnings if w.startswith("bright")]


def test_ranking_says_a_shared_warning_once_too(tmp_path) -> None:
    weights, folder = _fluo_model_and_folder(tmp_path)
    paths = sorted(folder.glob("*.png"))
    events: list = []
    drain(iter_rank_images(paths, weights, PARAMS, copies=2), events.append)
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert len([w for w in warnings if "turn Invert on" in w]) == 1
    assert [w for w in warnings if w.startswith("2 more file(s) had the warning dark0.png")]
