"""iter_predict_planes / predict_planes / reapply with tiny random models on real sample crops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress, drain
from napari_cellseg.inference.planes import Prediction, iter_predict_planes, predict_planes, reapply
from napari_cellseg.io.images import read_image
from napari_cellseg.io.samples import get_sample
from napari_cellseg.models import ModelCard, build_model
from napari_cellseg.models.weights import LoadedModel
from napari_cellseg.params import PostprocessParams, PredictParams

UNET_ARGS = {
    "encoder_name": "resnet18",
    "in_channels": 3,
    "classes": 3,
    "encoder_depth": 3,
    "decoder_channels": (32, 16, 8),
}
MASKRCNN_ARGS = {"backbone": "resnet18", "min_size": 128, "max_size": 128, "detections_per_img": 30}


def _loaded(family: str, args: dict, model: torch.nn.Module | None = None) -> LoadedModel:
    torch.manual_seed(0)
    model = (model or build_model(family, **args)).eval()
    return LoadedModel(model, ModelCard.for_model(family, args), Path("<test>"), "test")


@pytest.fixture(scope="module")
def unet() -> LoadedModel:
    return _loaded("unet", UNET_ARGS)


@pytest.fixture(scope="module")
def maskrcnn() -> LoadedModel:
    return _loaded("maskrcnn", MASKRCNN_ARGS)


@pytest.fixture(scope="module")
def fluorescence() -> np.ndarray:
    return read_image(get_sample("dsb_fluorescence").image_path).data  # (256, 256, 4) RGBA


def _run(gen) -> tuple[list, Prediction]:
    events = []
    prediction = drain(gen, events.append)
    assert isinstance(prediction, Prediction)
    assert not any(isinstance(e, Prediction) for e in events)  # events only, then a return
    return events, prediction


def test_unet_on_a_real_sample(unet, fluorescence) -> None:
    params = PredictParams(tile_size=128, overlap=16, batch_size=2, keep_probabilities=True)
    events, pred = _run(iter_predict_planes(fluorescence, unet, params))
    tiles = [e for e in events if isinstance(e, Progress) and e.stage == "tiles"]
    # the tiny U-Net (depth 3) takes multiples of 8: 4 even tiles of 136 in batches of 2
    assert tiles[-1].done == tiles[-1].total == 2
    assert pred.labels.shape == (256, 256) and pred.labels.dtype == np.uint16
    assert pred.probabilities.shape == (3, 256, 256)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=1e-2)
    assert pred.axes == "YXS"
    assert set(pred.table) >= {"label", "area", "bbox_y0", "plane"}
    assert len(pred.table["label"]) == pred.n_objects == len(set(np.unique(pred.labels)) - {0})
    assert set(pred.timings) == {"load", "preprocess", "network", "postprocess", "total"}


def test_maskrcnn_on_a_real_sample(maskrcnn, fluorescence) -> None:
    params = PredictParams(tile_size=128, overlap=32, post=PostprocessParams(score_threshold=0.0))
    _, pred = _run(iter_predict_planes(fluorescence[:200, :200], maskrcnn, params))
    assert pred.labels.shape == (200, 200) and pred.labels.dtype == np.uint16
    assert {"score", "class"} <= set(pred.table)
    assert pred.n_objects > 0  # a random model with threshold 0 still finds "objects"
    assert np.all(np.diff(pred.table["score"]) <= 1e-6)  # label i = i-th best score
    assert set(np.unique(pred.labels)) - {0} == set(pred.table["label"].tolist())


def test_reapply_changes_labels_without_running_the_model(unet, fluorescence, monkeypatch) -> None:
    pred = predict_planes(fluorescence, unet, PredictParams(tile_size=256, overlap=0))
    calls = []
    monkeypatch.setattr(unet.model, "forward", lambda *a, **k: calls.append(1))
    low = reapply(pred, PostprocessParams(prob_threshold=0.05, min_size=0))
    high = reapply(pred, PostprocessParams(prob_threshold=0.95, min_size=0))
    assert calls == []
    assert (low.labels > 0).sum() > (high.labels > 0).sum()
    assert low.params.post.prob_threshold == 0.05


def test_z_stack_is_segmented_plane_by_plane(unet, fluorescence) -> None:
    grey = fluorescence[..., 0]
    stack = np.stack([grey, grey[::-1]])  # ZYX
    events, pred = _run(iter_predict_planes(stack, unet, PredictParams(tile_size=256, axes="ZYX")))
    planes = [e for e in events if isinstance(e, Progress) and e.stage == "planes"]
    assert [(p.done, p.total) for p in planes] == [(1, 2), (2, 2)]
    assert pred.labels.shape == (2, 256, 256)
    assert set(np.unique(pred.table["plane"])) <= {0, 1}


def test_time_lapse_multichannel_with_channel_choice(unet, fluorescence) -> None:
    grey = fluorescence[:64, :64, 0]
    movie = np.stack([np.stack([grey, grey // 2])] * 2)  # T, C, Y, X
    params = PredictParams(tile_size=64, overlap=0, axes="TCYX", channels=(0, 0, 1))
    pred = predict_planes(movie, unet, params)
    assert pred.labels.shape == (2, 64, 64)


def test_cancel_at_a_yield(unet, fluorescence) -> None:
    polls = iter(range(100))
    gen = iter_predict_planes(
        fluorescence,
        unet,
        PredictParams(tile_size=64, overlap=0),
        should_stop=lambda: next(polls) >= 2,
    )
    with pytest.raises(CancelledError):
        list(gen)
    gen2 = iter_predict_planes(fluorescence, unet, PredictParams(tile_size=64, overlap=0))
    next(gen2)
    gen2.close()  # closing the generator also stops it cleanly


class _OOMAbove(torch.nn.Module):
    """Wraps a model and raises CUDA-style out-of-memory above a batch or tile size."""

    def __init__(self, inner: torch.nn.Module, max_batch: int, max_side: int) -> None:
        super().__init__()
        self.inner, self.max_batch, self.max_side = inner, max_batch, max_side

    def forward(self, x):
        if x.shape[0] > self.max_batch or x.shape[-1] > self.max_side:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_batch_then_tile(fluorescence) -> None:
    inner = build_model("unet", **UNET_ARGS)
    loaded = _loaded("unet", UNET_ARGS, _OOMAbove(inner, max_batch=1, max_side=80))
    params = PredictParams(tile_size=256, overlap=16, batch_size=4, backend="torch")
    events, pred = _run(iter_predict_planes(fluorescence[:200, :200], loaded, params))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices == [
        "out of memory: retrying with batch size 2",
        "out of memory: retrying with batch size 1",
        "out of memory: retrying with tiles of 128 px",
        "out of memory: retrying with tiles of 64 px",
    ]
    assert pred.labels.shape == (200, 200)
    assert pred.params.tile_size == 64 and pred.params.batch_size == 1
    assert pred.notices == notices


def test_out_of_memory_on_cpu_at_the_smallest_size_is_a_clear_error(fluorescence) -> None:
    inner = build_model("unet", **UNET_ARGS)
    loaded = _loaded("unet", UNET_ARGS, _OOMAbove(inner, max_batch=0, max_side=0))
    with pytest.raises(CellsegError, match="out of memory even on the CPU"):
        predict_planes(fluorescence[:100, :100], loaded, PredictParams(tile_size=128, overlap=0))


@pytest.mark.parametrize(
    ("image", "params", "message"),
    [
        (np.full((64, 64), np.nan, np.float32), PredictParams(), "NaN"),
        (np.zeros((1, 1), np.uint8), PredictParams(), "too small|at least"),
        (np.zeros((0, 64), np.uint8), PredictParams(), "empty|zero"),
        (np.zeros((2, 2, 2, 2, 2, 8, 8), np.uint8), PredictParams(), "dimensions"),
        (np.zeros((64, 64, 2), np.uint8), PredictParams(axes="YXC"), "channels"),
        (np.zeros((64, 64), np.uint8), PredictParams(channels=(0, 1, 2)), "channel"),
    ],
    ids=["nan", "one-pixel", "empty", "7-d", "two-channels", "bad-channel-index"],
)
def test_bad_inputs_are_clear_errors(unet, image, params, message) -> None:
    with pytest.raises(CellsegError, match=message):
        predict_planes(image, unet, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_size": 5}, "tile size 5 is out of range"),
        ({"tile_size": 100000}, "out of range"),
        ({"overlap": 300}, "overlap 300"),
        ({"batch_size": 0}, "batch size"),
        ({"tta": 3}, "test-time augmentation takes 1, 2, 4, 8 copies"),
    ],
)
def test_absurd_parameters_are_refused(kwargs, message) -> None:
    with pytest.raises(CellsegError, match=message):
        PredictParams(**kwargs)


def test_test_time_augmentation_averages_flipped_copies(unet, fluorescence) -> None:
    base = PredictParams(tile_size=128, overlap=16, keep_probabilities=True)
    _, plain = _run(iter_predict_planes(fluorescence, unet, base))
    events, augmented = _run(iter_predict_planes(fluorescence, unet, replace(base, tta=4)))
    assert augmented.params.tta == 4
    assert not [e for e in events if isinstance(e, Notice)]
    a, b = (p.probabilities.astype(np.float32) for p in (plain, augmented))
    assert a.shape == b.shape == (3, 256, 256)
    assert np.abs(a - b).mean() > 1e-3  # the copies differ: a random net is not symmetric
    np.testing.assert_allclose(b.sum(0), 1.0, atol=1e-2)  # still probabilities
    # averaging over the flips makes the output flip-equivariant
    flipped = fluorescence[:, ::-1].copy()
    _, mirrored = _run(iter_predict_planes(flipped, unet, replace(base, tta=4)))
    np.testing.assert_allclose(mirrored.probabilities.astype(np.float32)[:, :, ::-1], b, atol=2e-2)


def _half_blind_detector(self, batch):
    """A stand-in detector that sees the bright objects of the left half of a tile only."""
    from skimage.measure import label, regionprops

    from napari_cellseg.inference.detections import Detections

    out = []
    for tile in batch:
        seen = tile[0] > 0.5
        seen[:, tile.shape[-1] // 2 :] = False
        props = regionprops(label(seen))
        out.append(
            Detections(
                np.array([p.bbox for p in props]).reshape(-1, 4),
                np.full(len(props), 0.9),
                np.ones(len(props)),
                [p.image.astype(np.float32) for p in props],
            )
        )
    return out


def test_mask_rcnn_test_time_augmentation_fuses_the_copies(maskrcnn, monkeypatch) -> None:
    from napari_cellseg.inference.model_runner import ModelRunner

    image = np.zeros((96, 96), np.uint8)
    image[20:36, 10:26] = 200  # left
    image[60:80, 62:84] = 200  # right: the stand-in finds it only in the mirrored copy
    monkeypatch.setattr(ModelRunner, "maskrcnn_detections", _half_blind_detector)
    post = PostprocessParams(score_threshold=0.4, min_size=0)
    params = PredictParams(tile_size=128, overlap=16, axes="YX", post=post)
    _, plain = _run(iter_predict_planes(image, maskrcnn, params))
    events, augmented = _run(iter_predict_planes(image, maskrcnn, replace(params, tta=2)))
    assert plain.n_objects == 1 and augmented.n_objects == 2
    assert np.array_equal(augmented.labels > 0, image > 0)  # both, mapped back in place
    tiles = [(e.done, e.total) for e in events if isinstance(e, Progress) and e.stage == "tiles"]
    assert tiles == [(1, 2), (2, 2)]
    assert not [e for e in events if isinstance(e, Notice)]
    # each object was found by one copy of two: half its score, below a 0.5 threshold
    stricter = reapply(augmented, replace(post, score_threshold=0.5))
    assert stricter.n_objects == 0


def _top_left_detector(self, batch):
    """A stand-in detector that sees the top-left quadrant of a tile only."""
    blinded = []
    for tile in batch:
        seen = tile.copy()
        seen[:, tile.shape[-2] // 2 :] = 0
        seen[:, :, tile.shape[-1] // 2 :] = 0
        blinded.append(seen)
    return _half_blind_detector(self, blinded)


def test_mask_rcnn_eight_copies_bring_every_quadrant_back_in_place(maskrcnn, monkeypatch):
    from napari_cellseg.inference.model_runner import ModelRunner

    image = np.zeros((96, 96), np.uint8)  # one off-diagonal rectangle per quadrant
    image[5:12, 10:30] = image[8:30, 60:66] = image[55:60, 15:40] = image[70:90, 75:80] = 200
    monkeypatch.setattr(ModelRunner, "maskrcnn_detections", _top_left_detector)
    post = PostprocessParams(score_threshold=0.2, min_size=0)
    params = PredictParams(tile_size=128, overlap=16, axes="YX", post=post, tta=8)
    _, pred = _run(iter_predict_planes(image, maskrcnn, params))
    # each quadrant reaches the top left in two of the eight flips and rotations
    np.testing.assert_allclose(pred.raw[0].scores, 0.9 * 2 / 8, rtol=1e-6)
    assert pred.n_objects == 4
    assert np.array_equal(pred.labels > 0, image > 0)


def test_test_time_augmentation_reports_and_stops_between_copies(
    unet, fluorescence, monkeypatch
) -> None:
    from napari_cellseg.inference.model_runner import ModelRunner

    params = PredictParams(tile_size=128, overlap=16, batch_size=3, tta=8)
    events, _ = _run(iter_predict_planes(fluorescence, unet, params))
    tiles = [(e.done, e.total) for e in events if isinstance(e, Progress) and e.stage == "tiles"]
    assert tiles == [(n, 16) for n in range(1, 17)]  # 4 tiles of 136: 2 batches x 8 copies
    copies: list[int] = []
    real = ModelRunner.unet_copy

    def counted(self, batch, index):
        copies.append(index)
        return real(self, batch, index)

    monkeypatch.setattr(ModelRunner, "unet_copy", counted)
    with pytest.raises(CancelledError):
        list(iter_predict_planes(fluorescence, unet, params, should_stop=lambda: len(copies) >= 2))
    assert copies == [0, 1]  # stopped after the second copy, not after all eight


@pytest.mark.parametrize("tile", [32, 96, 128, 255, 256, 512, 2048])
def test_overlap_none_is_the_default_for_the_tile_size(tile: int) -> None:
    from napari_cellseg.params import default_overlap

    params = PredictParams(tile_size=tile, overlap=None)
    assert params.overlap == default_overlap(tile) == min(64, tile // 4)
    assert params.to_dict()["overlap"] == params.overlap
    if tile > 128:  # leaving overlap out still means 64 pixels, as before
        assert PredictParams(tile_size=tile).overlap == 64
