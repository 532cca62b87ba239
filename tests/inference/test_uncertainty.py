"""Per-object and per-image uncertainty: a model whose augmented copies disagree on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from doubtful_model import ambiguous_image, clear_image, doubtful_model
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Progress, drain
from napari_cellseg.inference.uncertainty import iter_uncertainty, rank_objects
from napari_cellseg.inference.uncertainty_signals import disagreement, score_objects
from napari_cellseg.params import PredictParams

CPU = PredictParams(device="cpu")


@pytest.fixture(scope="module")
def model():
    return doubtful_model()


def test_the_ambiguous_object_ranks_first_with_its_reason(model) -> None:
    objects = rank_objects(ambiguous_image(), model, CPU)
    assert len(objects) == 3
    first = objects[0]
    assert first.bbox == (40, 4, 56, 18)  # the dim square on the left
    assert first.reason.startswith("TTA copies disagree (IoU 0.33")
    assert first.score == pytest.approx(2 / 3, abs=1e-3)  # two of three copies miss it
    assert first.signals["boundary"] > 0.4  # the copies' mean probability sits near 0.5
    assert all(o.score < 0.01 for o in objects[1:])
    assert all(o.reason == "no doubt: copies agree, clear boundary" for o in objects[1:])
    assert first.centroid == pytest.approx((47.5, 10.5))
    assert first.area == 16 * 14


def test_image_score_and_progress(model) -> None:
    events: list = []
    clear = drain(iter_uncertainty(clear_image(), model, CPU), events.append)
    doubtful = drain(iter_uncertainty(ambiguous_image(), model, CPU))
    assert doubtful.score > 0.2 > 0.01 > clear.score
    assert clear.reason.startswith("no doubtful object")
    assert clear.uncertain_fraction == 0.0
    assert doubtful.uncertain_fraction == pytest.approx(224 / (224 + 2 * 256))
    assert doubtful.copies == 4 and doubtful.labels.shape == (64, 64)
    steps = [e for e in events if isinstance(e, Progress)]
    assert {e.stage for e in steps} == {"copies"}
    assert steps[-1].done == steps[-1].total == 400
    assert [e.done for e in steps] == sorted(e.done for e in steps)


def test_copies_follow_tta_or_the_argument(model) -> None:
    two = PredictParams(device="cpu", tta=2)
    assert drain(iter_uncertainty(clear_image(), model, two)).copies == 2
    assert drain(iter_uncertainty(clear_image(), model, CPU, copies=8)).copies == 8
    with pytest.raises(CellsegError, match="2 to 8 copies, got 1"):
        drain(iter_uncertainty(clear_image(), model, CPU, copies=1))


def test_given_labels_are_scored(model) -> None:
    labels = np.zeros((64, 64), np.uint16)
    labels[6:22, 6:22] = 5  # what the model finds
    labels[28:36, 50:60] = 9  # an object the user painted where the model sees nothing
    objects = rank_objects(clear_image(), model, CPU, labels=labels)
    assert [o.label for o in objects] == [9, 5]
    assert objects[0].score == 1.0
    assert objects[0].reason.startswith("TTA copies disagree (IoU 0.00")
    with pytest.raises(CellsegError, match="does not match the image's label shape"):
        rank_objects(clear_image(), model, CPU, labels=labels[:32])


def test_stops_at_a_yield(model) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        drain(iter_uncertainty(ambiguous_image(), model, CPU, should_stop=stop))
    gen = iter_uncertainty(ambiguous_image(), model, CPU)
    next(gen)
    gen.close()  # closing between copies leaves nothing behind


def test_planes_of_a_stack_are_scored_separately(model) -> None:
    stack = np.stack([clear_image(), ambiguous_image()])
    result = drain(iter_uncertainty(stack, model, PredictParams(device="cpu", axes="ZYX")))
    assert result.labels.shape == (2, 64, 64)
    assert (result.objects[0].plane, result.objects[0].bbox) == (1, (40, 4, 56, 18))
    assert sorted({o.plane for o in result.objects}) == [0, 1]


def test_detection_scores_rank_objects_without_copies_disagreeing() -> None:
    ref = np.zeros((20, 20), np.int32)
    ref[2:8, 2:8], ref[10:16, 10:16] = 1, 2
    objects = score_objects(ref, [ref, ref], scores={1: 0.95, 2: 0.32})
    assert [(o.label, o.reason) for o in objects] == [
        (2, "low detection score 0.32"),
        (1, "no doubt: copies agree, score 0.95"),
    ]
    assert objects[0].score == pytest.approx(0.68)
    assert disagreement([ref, ref]) == 0.0


def test_maskrcnn_end_to_end(tmp_path) -> None:
    from napari_cellseg.models import load_weights
    from tiny_models import save_tiny

    loaded = load_weights(save_tiny("maskrcnn", tmp_path / "m.safetensors"), device="cpu")
    params = PredictParams(device="cpu").with_post(score_threshold=0.05, min_size=0)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    result = drain(iter_uncertainty(image, loaded, params, copies=2))
    assert result.labels.shape == (64, 64)
    assert len(result.objects) == len(np.unique(result.labels)) - 1
    for o in result.objects:
        assert set(o.signals) <= {"tta", "detection"} and "tta" in o.signals
        assert 0.0 <= o.score <= 1.0


def test_detector_candidates_below_the_threshold_are_possible_missed_objects() -> None:
    from types import SimpleNamespace

    from napari_cellseg.inference.detections import Detections
    from napari_cellseg.inference.uncertainty import _candidates

    ref = np.zeros((40, 40), np.int32)
    ref[2:10, 2:10] = 1
    boxes = [(20, 20, 30, 30), (2, 2, 10, 10), (22, 22, 32, 32), (30, 0, 38, 8), (0, 30, 8, 38)]
    scores = [0.4, 0.45, 0.3, 0.2, 0.6]  # missed; on object 1; inside the first; too low; kept
    masks = [np.ones((b[2] - b[0], b[3] - b[1]), np.float32) for b in boxes]
    raw = Detections(np.array(boxes), np.array(scores), np.ones(5, np.int64), masks)
    first = SimpleNamespace(raw=[raw], scale=1.0)
    run = PredictParams().with_post(score_threshold=0.5)
    (missed,) = _candidates(first, 0, ref, run)
    assert (missed.label, missed.bbox, missed.area) == (0, (20, 20, 30, 30), 100)
    assert missed.score == pytest.approx(0.4)
    assert missed.reason == "possible missed object (score 0.40, below 0.50)"
    half = SimpleNamespace(raw=[raw], scale=2.0)  # the network ran on the image at x2
    assert _candidates(half, 0, ref, run)[0].bbox == (10, 10, 15, 15)
    from napari_cellseg.inference.uncertainty_signals import image_score

    score, reason = image_score([missed], 0.0)
    assert score == pytest.approx(0.2) and reason.startswith("no objects kept; 1 possible missed")


@pytest.mark.parametrize("copies", [4, 8])
def test_small_copies_go_through_the_network_together_with_the_same_result(copies, monkeypatch):
    """Copies 2.. of a small image of one shape go as one group (ONNX Runtime on the CPU: 4
    tiles of 256² a pass); the ranking is the one of copy after copy."""
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    from group_recording import record_groups
    from napari_cellseg.inference import image_groups
    from napari_cellseg.io.images import read_image
    from napari_cellseg.models.weights import load_weights

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    image = read_image(sample / "images" / "dsb_fluorescence.png").data[:, :200]  # not square
    model = load_weights(sample / "models" / "unet_dsb.safetensors")
    params = PredictParams(device="cpu", diameter="off")
    groups = record_groups(monkeypatch, "napari_cellseg.inference.uncertainty.iter_predict_images")
    events: list = []
    together = drain(iter_uncertainty(image, model, params, copies=copies), events.append)
    # 256×200: copies 2-4 keep the shape, 5-8 are transposed (200×256): two groups of 4 at most
    assert groups == ([3] if copies == 4 else [3, 4])
    monkeypatch.setattr(image_groups, "IMAGES_TOGETHER", False)
    alone = drain(iter_uncertainty(image, model, params, copies=copies))
    assert (together.score, together.reason) == (alone.score, alone.reason)
    assert together.uncertain_fraction == alone.uncertain_fraction
    assert [(o.label, o.score) for o in together.objects] == [
        (o.label, o.score) for o in alone.objects
    ]
    steps = [e.done for e in events if isinstance(e, Progress)]
    assert steps == sorted(steps) and steps[-1] == copies * 100
