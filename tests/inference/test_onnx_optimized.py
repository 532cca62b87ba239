"""The graph ONNX Runtime optimizes for this CPU is kept beside the export and reopened as is."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.inference import onnx_optimized
from napari_cellseg.inference.onnx_backend import SESSIONS, onnx_unet, used_and_pruned
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from tiny_models import TINY_UNET

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _loaded(seed: int) -> LoadedModel:
    torch.manual_seed(seed)
    model = build_model("unet", **TINY_UNET).eval()
    return LoadedModel(model, ModelCard.for_model("unet", TINY_UNET), Path("m"), "test")


def _files(root: Path) -> tuple[list[Path], list[Path]]:
    """(exports, optimized graphs) in the cache."""
    onnx = sorted((root / "onnx").glob("*.onnx"))
    return [f for f in onnx if ".opt-" not in f.name], [f for f in onnx if ".opt-" in f.name]


def _session(seed: int):
    SESSIONS.clear()  # a new process: nothing in memory
    runner, note = onnx_unet(_loaded(seed).model, 3)
    assert note is None and runner is not None
    return runner


def test_the_first_session_keeps_its_graph_and_later_ones_open_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    first = _session(5)
    (export,), (graph,) = _files(tmp_path)
    assert graph.name.startswith(export.stem + ".opt-")
    assert not list((tmp_path / "onnx").glob(".*partial"))
    stamp = graph.stat().st_mtime_ns
    opened = []
    real = ort.InferenceSession
    monkeypatch.setattr(
        ort, "InferenceSession", lambda p, *a, **k: opened.append(p) or real(p, *a, **k)
    )
    second = _session(5)
    assert opened == [str(graph)] and graph.stat().st_mtime_ns == stamp  # reopened, not remade
    assert np.array_equal(first(x), second(x))  # the same logits, bit for bit


def test_a_broken_or_foreign_graph_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    expected = _session(6)(x)
    (_,), (graph,) = _files(tmp_path)
    graph.write_bytes(b"not an onnx graph")
    assert np.array_equal(_session(6)(x), expected)
    assert graph.stat().st_size > 100  # made again from the export
    # another CPU (or ONNX Runtime version) makes its own graph and leaves this one
    monkeypatch.setattr(onnx_optimized, "cpu_id", lambda: "another cpu")
    assert np.array_equal(_session(6)(x), expected)
    assert len(_files(tmp_path)[1]) == 2


def test_a_cache_that_cannot_be_written_still_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CELLSEG_CACHE", str(tmp_path))
    _session(7)  # the export exists; its graph cannot be saved from now on
    for graph in _files(tmp_path)[1]:
        graph.unlink()

    def refuse(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert _session(7)(x).shape == (1, 3, 32, 32)
    assert _files(tmp_path)[1] == [] and not list((tmp_path / "onnx").glob(".*partial"))


def test_pruning_counts_and_deletes_an_export_with_its_graphs(tmp_path):
    old, new = tmp_path / "a-c3.onnx", tmp_path / "b-c3.onnx"
    for path, atime in ((old, 10**18), (new, 2 * 10**18)):
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(atime, atime))
    (tmp_path / "a-c3.opt-0123.onnx").write_bytes(b"x" * 100)
    (tmp_path / "b-c3.opt-0123.onnx").write_bytes(b"x" * 100)
    assert used_and_pruned(new, limit_bytes=350) == [old]  # 400 bytes with the graphs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-c3.onnx", "b-c3.opt-0123.onnx"]
    assert used_and_pruned(new, limit_bytes=150) == []  # the one in use stays, graph and all
