"""The in-process batch runner gathers consecutive images of one size into groups where a
network pass takes several tiles (CUDA; simulated on the CPU by letting it pass 4): the
same label files as one by one, a group per run of equal images, a failed group retried file
by file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import PARAMS, disk_image, tmp_files, write_png

from group_recording import record_groups
from napari_cellseg.batch import iter_batch
from napari_cellseg.events import drain
from napari_cellseg.inference import image_groups, model_runner
from napari_cellseg.io.images import read_labels

# each 96² image is one tile of 128: the images can go together
GROUP_PARAMS = replace(PARAMS, tile_size=128, overlap=16, batch_size=4, backend="torch")
NAMES = ["a", "b", "c", "d", "e", "f_big", "g", "h"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five 96² images, one of 160² (two tiles: alone), then two more of 96²."""
    for seed, name in enumerate(NAMES):
        size = 160 if name == "f_big" else 96
        write_png(tmp_path / "in" / f"{name}.png", disk_image(seed, size))
    return tmp_path / "in"


def _groups(monkeypatch) -> list[int]:
    """Record the size of every group run together."""
    return record_groups(monkeypatch)


def _labels(out: Path) -> dict[str, np.ndarray]:
    return {p.name: read_labels(p) for p in sorted(out.glob("*_labels.tif"))}


def _run(folder: Path, out: Path, **kwargs):
    results = []
    summary = drain(
        iter_batch(folder, out, kwargs.pop("weights"), GROUP_PARAMS, **kwargs),
        lambda e: results.append(e) if hasattr(e, "status") else None,
    )
    return summary, results


def test_groups_write_the_labels_of_one_by_one(folder, tmp_path, weights, monkeypatch) -> None:
    sizes = _groups(monkeypatch)
    alone, _ = _run(folder, tmp_path / "alone", weights=weights)
    assert sizes == []  # the CPU passes one tile at a time: no group
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 4)
    together, results = _run(folder, tmp_path / "together", weights=weights)
    assert sizes == [4, 2]  # a-d, e alone before the large f, then g-h
    assert together.done == alone.done == len(NAMES)
    assert [r.status for r in results] == ["done"] * len(NAMES)
    reference, grouped = _labels(tmp_path / "alone"), _labels(tmp_path / "together")
    assert reference.keys() == grouped.keys() and len(reference) == len(NAMES)
    assert sum(int(v.max()) for v in reference.values()) > 0
    for name, labels in reference.items():
        np.testing.assert_array_equal(grouped[name], labels, err_msg=name)


def test_a_failed_group_runs_again_file_by_file(folder, tmp_path, weights, monkeypatch) -> None:
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 4)

    tried: list[int] = []

    def broken(images, *args, **kwargs):
        tried.append(len(images))
        raise RuntimeError("group failed")
        yield  # a generator, as the real one

    monkeypatch.setattr(image_groups, "iter_predict_images", broken)
    summary, results = _run(folder, tmp_path / "out", weights=weights)
    assert tried == [4, 2] and summary.done == len(NAMES) and summary.failed == 0
    assert [r.status for r in results] == ["done"] * len(NAMES)
    assert len(_labels(tmp_path / "out")) == len(NAMES)


def test_a_stop_inside_a_group_loses_nothing(folder, tmp_path, weights, monkeypatch) -> None:
    monkeypatch.setattr(model_runner, "CPU_TILES_PER_PASS", 4)
    sizes = _groups(monkeypatch)
    out = tmp_path / "out"
    gen = iter_batch(folder, out, weights, GROUP_PARAMS, should_stop=lambda: len(sizes) >= 1)
    summary = drain(gen)  # stopped inside the first group: none of it is written
    assert summary.cancelled and summary.done == 0 and sizes == [4]
    assert not _labels(out) and not tmp_files(out)
    rest, results = _run(folder, out, weights=weights)
    assert rest.done == len(NAMES) and [r.status for r in results] == ["done"] * len(NAMES)


def test_onnx_runtime_groups_small_images_on_the_cpu(folder, tmp_path, weights, monkeypatch):
    pytest.importorskip("onnxruntime")
    params = replace(GROUP_PARAMS, backend="auto")  # ONNX Runtime on the CPU
    sizes = _groups(monkeypatch)
    grouped = drain(iter_batch(folder, tmp_path / "together", weights, params))
    assert sizes == [4, 2]  # a-d, then g-h: as many 96² images as the batch size
    monkeypatch.setattr(image_groups, "IMAGES_TOGETHER", False)
    alone = drain(iter_batch(folder, tmp_path / "alone", weights, params))
    assert sizes == [4, 2] and grouped.done == alone.done == len(NAMES)
    reference, together = _labels(tmp_path / "alone"), _labels(tmp_path / "together")
    assert reference.keys() == together.keys()
    for name, labels in reference.items():
        np.testing.assert_array_equal(together[name], labels, err_msg=name)
