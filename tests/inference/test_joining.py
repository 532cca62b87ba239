"""Z-stacks and time-lapses through the pipeline: 3D objects, ids kept over time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage.draw import disk

from event_helpers import collect
from known_output_model import known_model
from napari_cellseg.events import CancelledError, Progress
from napari_cellseg.inference import iter_predict, predict, reapply
from napari_cellseg.inference.joining import join, joins
from napari_cellseg.inference.planes import Prediction
from napari_cellseg.labels.stitching import DEFAULT_IOU, DEFAULT_MAX_GAP
from napari_cellseg.params import PostprocessParams, PredictParams

PARAMS = PredictParams(device="cpu", tile_size=64, overlap=8, axes="ZYX")
CENTRES = [(16, 16), (16, 46), (46, 30)]


def sphere_stack() -> np.ndarray:
    """(Z, Y, X): three bright balls of radius 9, one plane per pixel, apart in xy."""
    zz, yy, xx = np.mgrid[:11, :64, :64]
    image = np.zeros((11, 64, 64), np.uint8)
    for cy, cx in CENTRES:
        image[(zz - 5) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = 200
    image[:, 0, 0] = 1  # each plane has something dark to normalise against
    return image


def disc_movie(missing: int | None = None) -> np.ndarray:
    """(T, Y, X): three discs drifting right 2 px a frame; disc 1 absent from ``missing``."""
    movie = np.zeros((5, 64, 64), np.uint8)
    for t in range(5):
        for i, (cy, cx) in enumerate(CENTRES):
            if i != 1 or t != missing:
                movie[t][disk((cy, cx + 2 * t - 4), 8, shape=(64, 64))] = 200
    return movie


@pytest.fixture(scope="module")
def model():
    return known_model()


def test_the_defaults_are_those_of_the_labels_module() -> None:
    params = PredictParams()
    assert (params.stitch_iou, params.max_gap) == (DEFAULT_IOU, DEFAULT_MAX_GAP)
    assert not params.stitch_3d and not params.link_time and params.z_spacing is None


def test_a_z_stack_is_stitched_into_3d_objects(model) -> None:
    image = sphere_stack()
    plain = predict(image, model, PARAMS)  # per plane: ids restart in every plane
    assert plain.n_objects > 3 and plain.labels.max() == 3
    stitched = replace(PARAMS, stitch_3d=True)
    prediction, events = collect(iter_predict(image, model, stitched))
    assert prediction.n_objects == 3 == prediction.labels.max()
    for z in range(2, 9):  # every plane through the balls: the same three ids
        assert sorted(prediction.labels[z, cy, cx] for cy, cx in CENTRES) == [1, 2, 3]
    assert [e.stage for e in events if isinstance(e, Progress)][-11:] == ["stitch"] * 11
    # the table keeps a row per object and plane, with the 3D ids
    table = prediction.table
    assert len(table["label"]) == plain.n_objects
    for row in range(len(table["label"])):
        plane = prediction.labels[table["plane"][row]]
        assert np.count_nonzero(plane == table["label"][row]) == table["area"][row]


def test_re_thresholding_keeps_the_stitching(model) -> None:
    params = replace(PARAMS, stitch_3d=True)
    prediction = predict(sphere_stack(), model, params)
    again = reapply(prediction, PostprocessParams(min_size=30))
    assert again.n_objects == 3 == again.labels.max()
    assert again.params.stitch_3d and again.params.post.min_size == 30


def test_a_time_lapse_keeps_its_ids_and_closes_gaps(model) -> None:
    base = dict(device="cpu", tile_size=64, overlap=8, axes="TYX", link_time=True)
    linked = predict(disc_movie(missing=2), model, PredictParams(**base))
    ids = [[linked.labels[t, cy, cx + 2 * t - 4] for cy, cx in CENTRES] for t in range(5)]
    assert ids[0] == ids[1] == ids[3] == ids[4] == [1, 2, 3]
    assert ids[2] == [1, 0, 3] and linked.n_objects == 3
    no_gap = predict(disc_movie(missing=2), model, PredictParams(**base, max_gap=0))
    assert no_gap.labels[4, 16, 50] == 4 and no_gap.n_objects == 4


def test_linking_without_stitching_keeps_each_plane_apart() -> None:
    labels = np.zeros((2, 2, 8, 8), np.uint16)  # T, Z: the same id in both planes
    labels[:, :, 2:6, 2:6] = 1
    table = {"plane": np.arange(4), "label": np.ones(4, np.int64), "area": np.full(4, 16)}
    prediction = Prediction(
        labels, table, card=None, params=PredictParams(link_time=True), device="cpu", axes="TZYX"
    )
    linked = join(prediction)
    assert linked.labels[:, 0, 3, 3].tolist() == [1, 1]
    assert linked.labels[:, 1, 3, 3].tolist() == [2, 2]
    assert linked.table["label"].tolist() == [1, 2, 1, 2] and linked.n_objects == 2


def test_joining_stops_when_asked(model) -> None:
    params = replace(PARAMS, stitch_3d=True)
    seen: list[str] = []

    def stop() -> bool:
        return "stitch" in seen

    gen = iter_predict(sphere_stack(), model, params, should_stop=stop)
    with pytest.raises(CancelledError):
        for event in gen:
            if isinstance(event, Progress):
                seen.append(event.stage)
    assert seen.count("stitch") == 1


@pytest.mark.parametrize(
    ("stitch", "link", "axes", "what"),
    [(True, True, "ZTYX", "zt"), (True, False, "TYX", ""), (False, True, "CYX", "")],
)
def test_what_is_joined_follows_the_axes(stitch, link, axes, what) -> None:
    assert joins(PredictParams(stitch_3d=stitch, link_time=link), axes) == what
