"""The Evaluate dock's jobs: lazy folder reading, progress at every step, no kept outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from event_helpers import collect
from napari_cellseg._napari._evaluate_jobs import (
    EvalImage,
    folder_images,
    iter_compare,
    iter_evaluate_folders,
)
from napari_cellseg.events import Progress
from napari_cellseg.io.images import read_labels, write_labels
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models import ModelCard, build_model, save_weights
from tiny_models import TINY_UNET


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    from napari_cellseg.io.images import read_image

    s = get_sample("dsb_fluorescence")
    return np.asarray(read_image(s.image_path).data), np.asarray(read_labels(s.mask_path))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(build_model("unet", **TINY_UNET), ModelCard.for_model("unet", TINY_UNET), path)
    return path


def run(gen):
    value, events = collect(gen)
    return events, value


def test_folder_images_are_loaders_read_one_at_a_time(sample, weights, tmp_path) -> None:
    import tifffile

    image, gt = sample
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    for stem in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "img" / f"{stem}.tif", image)
        write_labels(tmp_path / "gt" / f"{stem}.tif", gt)
    loaders = folder_images(tmp_path / "img", tmp_path / "gt")
    assert len(loaders) == 3 and all(callable(x) for x in loaders)
    loaded: list[str] = []

    def spy(loader):
        def load() -> EvalImage:
            item = loader()
            loaded.append(item.name)
            return item

        return load

    gen = iter_compare(
        {"A": weights, "B": weights}, [spy(x) for x in loaders], "cpu", keep_predictions=False
    )
    first = next(gen)
    assert isinstance(first, Progress) and loaded == []  # nothing read before it is needed
    events, result = run(gen)
    assert loaded == ["a", "b", "c"]  # each image read once, for both models
    done = [e.done for e in events if isinstance(e, Progress)]
    assert done == sorted(done) and done[-1] == events[-1].total == 1000
    assert result.predictions == {}  # a folder comparison keeps only the metrics
    assert result.metrics["A"]["n_images"] == 3
    assert result.metrics["A"] == result.metrics["B"]  # same weights, same images


def test_layer_comparison_keeps_the_predictions(sample, weights) -> None:
    image, gt = sample
    events, result = run(iter_compare({"A": weights}, [EvalImage("x", image, None, gt)], "cpu"))
    assert [p.labels.shape for p in result.predictions["A"]] == [gt.shape]
    assert any("segmenting x (1/1)" in e.message for e in events)


def test_evaluate_folders_yields_per_file_and_averages(sample, tmp_path) -> None:
    _, gt = sample
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for stem in ("a", "b"):
        write_labels(tmp_path / "gt" / f"{stem}.tif", gt)
        write_labels(tmp_path / "pred" / f"{stem}_labels.tif", gt)
    events, metrics = run(iter_evaluate_folders(tmp_path / "pred", tmp_path / "gt"))
    assert [(e.done, e.total) for e in events] == [(0, 2), (1, 2), (2, 2)]
    assert metrics["n_images"] == 2 and metrics["dsb_ap"] == 1.0


def test_a_large_plane_is_compared_block_by_block(sample, weights, monkeypatch) -> None:
    from napari_cellseg.inference import api
    from napari_cellseg.params import BlockOptions

    image, gt = sample
    monkeypatch.setattr(api, "DEFAULT_BLOCKS", BlockOptions(block_pixels=100 * 100))  # from 100²
    events, result = run(iter_compare({"A": weights}, [EvalImage("x", image, None, gt)], "cpu"))
    (prediction,) = result.predictions["A"]
    assert any("blocks" in note for note in prediction.notices)
    assert prediction.labels.shape == gt.shape
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == 1000


def test_tuning_summary_gives_both_columns_and_a_verdict() -> None:
    from napari_cellseg._napari._evaluate_jobs import Tuned
    from napari_cellseg.params import PostprocessParams
    from napari_cellseg.training.tuning import TuningResult

    def tuned(changed: dict, score: float, n_images: int) -> Tuned:
        result = TuningResult(
            post=PostprocessParams(**changed),
            changed=changed,
            score=score,
            base_score=0.4,
            n_images=n_images,
            n_candidates=90,
            ranking=[],
        )
        return Tuned(result, model=None, weights=Path("/m/mine.safetensors"))

    columns, verdict = tuned({"boundary_threshold": 0.1}, 0.55, 3).summary()
    assert columns == {
        "A as it is": {"dsb_ap": 0.4, "n_images": 3},
        "A tuned": {"dsb_ap": 0.55, "n_images": 3},
    }
    assert verdict.startswith("mine.safetensors: best of 90 settings: ")
    assert "0.400 → 0.550 on these 3 images" in verdict
    assert "on this image" in tuned({"min_size": 20}, 0.5, 1).summary()[1]
    _, unchanged = tuned({}, 0.4, 3).summary()
    assert unchanged == "no better setting among 90: keep the model as it is"
