"""Per-plane labels joined into 3D objects and linked over time, against known answers."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from event_helpers import collect
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import Progress
from napari_cellseg.labels.stitching import (
    iter_link_frames,
    iter_stitch_planes,
    link_frames,
    match_objects,
    stitch_planes,
)


def spheres(z_spacing: float, seed: int = 0, n_side: int = 4, min_size: int = 30) -> np.ndarray:
    """True 3D labels: spheres of radius 6-10 px (xy pixels) on a jittered grid, sampled
    every ``z_spacing`` px in z; neighbours may touch in a plane but never share a voxel.

    Cross sections under ``min_size`` px are left out, as per-plane segmentation's minimum
    size does (a 5 px polar cap has an IoU near 0.1 with the plane next to it).
    """
    rng = np.random.default_rng(seed)
    size = 24 * n_side
    n_z = int(np.ceil(size / z_spacing))
    zz = np.arange(n_z)[:, None, None] * z_spacing
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n_z, size, size), np.int32)
    label = 0
    for gz in range(n_side):
        for gy in range(n_side):
            for gx in range(n_side):
                label += 1
                centre = (np.array([gz, gy, gx]) + 0.5) * 24 + rng.uniform(-2, 2, 3)
                radius = rng.uniform(6, 10)
                inside = (
                    (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
                ) <= radius**2
                labels[inside] = label
    for plane in labels:
        ids, counts = np.unique(plane, return_counts=True)
        plane[np.isin(plane, ids[counts < min_size])] = 0
    return labels


def scramble_planes(labels: np.ndarray, seed: int = 1) -> np.ndarray:
    """Each plane (or frame) with its own random ids, restarting from small numbers."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for i, plane in enumerate(labels):
        present = np.unique(plane[plane > 0])
        new = rng.permutation(present.size) + 1
        lut = np.zeros(int(labels.max()) + 1, labels.dtype)
        lut[present] = new
        out[i] = lut[plane]
    return out


def same_objects(truth: np.ndarray, found: np.ndarray) -> bool:
    """Whether ``found`` is ``truth`` with its ids renamed one-to-one."""
    pairs = np.unique(np.stack([truth.ravel(), found.ravel()]), axis=1)
    pairs = pairs[:, (pairs[0] > 0) | (pairs[1] > 0)]
    return (
        bool(np.all(pairs > 0))
        and np.unique(pairs[0]).size == pairs.shape[1]
        and np.unique(pairs[1]).size == pairs.shape[1]
    )


def n_objects(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels)))


# -- z stitching -------------------------------------------------------------------------
def test_spheres_split_into_planes_are_stitched_back_exactly() -> None:
    truth = spheres(1.0)
    stitched, events = collect(iter_stitch_planes(scramble_planes(truth)))
    assert n_objects(stitched) == n_objects(truth) == 64
    assert same_objects(truth, stitched)
    assert sorted(np.unique(stitched[stitched > 0]).tolist()) == list(range(1, 65))
    assert stitched.dtype == np.uint16
    assert [e.done for e in events] == list(range(1, truth.shape[0] + 1))
    assert all(isinstance(e, Progress) and e.stage == "stitch" for e in events)


def test_anisotropic_planes_need_their_z_spacing() -> None:
    truth = spheres(4.0, seed=3)
    planes = scramble_planes(truth)
    as_if_isotropic = stitch_planes(planes, 0.25)
    assert n_objects(as_if_isotropic) > n_objects(truth)  # the caps break off
    stitched = stitch_planes(planes, 0.25, z_spacing=4.0)
    assert n_objects(stitched) == n_objects(truth)
    assert same_objects(truth, stitched)


def test_relaxed_threshold_still_keeps_touching_neighbours_apart() -> None:
    planes = np.zeros((2, 20, 40), np.int32)
    planes[0, 5:15, 5:15] = 1  # a cell in plane 0
    planes[1, 5:15, 13:23] = 1  # another cell in plane 1, grazing the first (20 % of it)
    assert stitch_planes(planes, 0.25, z_spacing=8.0).max() == 2
    assert stitch_planes(planes, 0.25, z_spacing=8.0, min_overlap=0.1).max() == 1


def test_one_to_one_assignment_prefers_the_best_total_overlap() -> None:
    # plane 1's object 1 overlaps both objects above; the best IoU pairing wins
    a = np.zeros((1, 12), np.int32)
    b = np.zeros((1, 12), np.int32)
    a[0, 0:6], a[0, 6:12] = 1, 2
    b[0, 0:5], b[0, 5:12] = 1, 2
    assert match_objects(a, b, 0.1) == [(1, 1), (2, 2)]
    b[0, 0:12] = 3
    assert match_objects(a, b, 0.1) == [(1, 3)]  # only one of the two may continue


def test_stitching_stops_at_a_yield() -> None:
    gen = iter_stitch_planes(scramble_planes(spheres(1.0, n_side=2)))
    first = next(gen)
    assert first.done == 1
    gen.close()  # stopping mid-way leaves nothing behind and raises nothing
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize(
    ("labels", "kwargs", "words"),
    [
        (np.zeros((4, 4), np.int32), {}, "(Z, Y, X)"),
        (np.zeros((2, 4, 4), np.float32), {}, "integer"),
        (-np.ones((2, 4, 4), np.int32), {}, ">= 0"),
        (np.zeros((2, 4, 4), np.int32), {"iou_threshold": 0.0}, "IoU threshold"),
        (np.zeros((2, 4, 4), np.int32), {"z_spacing": 0}, "z spacing"),
    ],
)
def test_bad_stacks_are_refused_in_one_line(labels, kwargs, words) -> None:
    with pytest.raises(CellsegError, match=words.replace("(", r"\(").replace(")", r"\)")):
        stitch_planes(labels, **kwargs)


# -- linking over time -------------------------------------------------------------------
def moving_discs(n_frames: int = 6, missing: dict[int, set[int]] | None = None) -> np.ndarray:
    """Three discs drifting 2 px a frame; ``missing[disc]``: frames it is absent from."""
    movie = np.zeros((n_frames, 64, 64), np.int32)
    for t in range(n_frames):
        for disc, (y, x) in enumerate([(14, 10), (40, 12), (30, 40)], start=1):
            if t in (missing or {}).get(disc, ()):
                continue
            movie[t][disk((y, x + 2 * t), 7, shape=(64, 64))] = disc
    return movie


def test_moving_discs_keep_their_ids() -> None:
    truth = moving_discs()
    linked, events = collect(iter_link_frames(scramble_planes(truth)))
    assert same_objects(truth, linked)
    assert n_objects(linked) == 3
    assert [e.stage for e in events] == ["link"] * truth.shape[0]


@pytest.mark.parametrize(
    ("gap", "max_gap", "kept"), [(1, 1, True), (1, 0, False), (2, 2, True), (3, 2, False)]
)
def test_a_disc_missing_for_a_few_frames(gap: int, max_gap: int, kept: bool) -> None:
    truth = moving_discs(8, missing={2: set(range(2, 2 + gap))})
    linked = link_frames(scramble_planes(truth), 0.25, max_gap=max_gap)
    before, after = linked[1][truth[1] == 2], linked[-1][truth[-1] == 2]
    assert np.unique(before).size == np.unique(after).size == 1
    assert bool(before[0] == after[0]) is kept
    assert n_objects(linked) == (3 if kept else 4)  # a new id is never an old one reused


def test_a_division_starts_a_new_id() -> None:
    movie = np.zeros((4, 60, 60), np.int32)
    for t in range(2):
        movie[t][disk((30, 30), 10, shape=(60, 60))] = 5
    for t in range(2, 4):
        movie[t][disk((30, 23), 7, shape=(60, 60))] = 1
        movie[t][disk((30, 37), 7, shape=(60, 60))] = 2
    linked = link_frames(movie)
    mother = linked[0, 30, 30]
    left, right = linked[3, 30, 23], linked[3, 30, 37]
    assert left != right and mother in (left, right)
    assert max(left, right) == 2  # the other daughter: the next id, constant after
    assert linked[2, 30, 23] == left and linked[2, 30, 37] == right


def test_volumes_are_linked_over_time() -> None:
    vol = np.zeros((3, 2, 20, 20), np.int32)
    for t in range(3):
        vol[t, :, 2 + t : 10 + t, 2:10] = 9 - t  # one cell, new id each frame
        vol[t, 1, 12:18, 12:18] = 1 + t
    linked = link_frames(vol)
    big, small = np.unique(linked[:, :, 5, 5]), np.unique(linked[:, 1, 15, 15])
    assert big.size == small.size == 1 and big[0] != small[0]
    assert n_objects(linked) == 2


def test_linking_checks_its_gap() -> None:
    with pytest.raises(CellsegError, match="largest gap"):
        link_frames(np.zeros((2, 4, 4), np.uint8), max_gap=-1)
