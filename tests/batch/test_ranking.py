"""Ranking a folder: the image made ambiguous on purpose comes first; bad files are left out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from doubtful_model import ambiguous_image, clear_image, doubtful_model
from napari_cellseg.batch.ranking import (
    RankedImage,
    iter_rank_images,
    ordered,
    rank_images,
    size_note,
)
from napari_cellseg.batch.ranking_csv import write_ranking_csv
from napari_cellseg.errors import CellsegError
from napari_cellseg.events import CancelledError, Notice, Progress, drain
from napari_cellseg.inference.uncertainty import RankedObject
from napari_cellseg.params import PredictParams

CPU = PredictParams(device="cpu")


@pytest.fixture(scope="module")
def model():
    return doubtful_model()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    tifffile.imwrite(tmp_path / "a_clear.tif", clear_image())
    tifffile.imwrite(tmp_path / "b_ambiguous.tif", ambiguous_image())
    tifffile.imwrite(tmp_path / "c_clear.tif", clear_image()[::-1])
    return tmp_path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_ambiguous_image_ranks_first(folder, model) -> None:
    paths = sorted(folder.glob("*.tif"))
    ranked = rank_images(paths, model, CPU, keep_labels=True)
    assert [r.path.name for r in ranked] == ["b_ambiguous.tif", "a_clear.tif", "c_clear.tif"]
    top = ranked[0]
    assert top.score > 0.2 and all(r.score < 0.01 for r in ranked[1:])
    assert top.n_objects == 3 and top.objects[0].bbox == (40, 4, 56, 18)
    assert "disagree" in top.reason and top.labels.shape == (64, 64)
    assert rank_images(paths[:1], model, CPU)[0].labels is None  # kept only when asked


def test_both_orders_on_the_known_case(folder, model) -> None:
    paths = sorted(folder.glob("*.tif"))
    by_mean = rank_images(paths, model, CPU, order="mean")
    by_total = rank_images(paths, model, CPU)
    assert by_mean[0].path.name == by_total[0].path.name == "b_ambiguous.tif"
    assert by_total[0].total_doubt == pytest.approx(sum(o.score for o in by_total[0].objects))
    assert by_total[0].total_doubt > max(r.total_doubt for r in by_total[1:])


def _doubt(score: float) -> RankedObject:
    return RankedObject(1, 0, score, "", (0, 0, 2, 2), (1.0, 1.0), 4)


def test_total_order_prefers_many_doubtful_objects_to_one_very_doubtful() -> None:
    sparse = RankedImage(Path("sparse.tif"), 0.45, "", [_doubt(0.9)])
    dense = RankedImage(Path("dense.tif"), 0.25, "", [_doubt(0.3)] * 8 + [_doubt(0.0)] * 20)
    clear = RankedImage(Path("clear.tif"), 0.0, "", [_doubt(0.0)] * 30)
    assert dense.total_doubt == pytest.approx(2.4) and sparse.total_doubt == pytest.approx(0.9)
    names = [r.path.name for r in ordered([clear, sparse, dense])]
    assert names == ["dense.tif", "sparse.tif", "clear.tif"]
    names = [r.path.name for r in ordered([clear, sparse, dense], "mean")]
    assert names == ["sparse.tif", "dense.tif", "clear.tif"]


def test_spread_order_sends_the_user_to_a_typical_image_then_to_an_unlike_one() -> None:
    """Three near twins and one outlier: the most doubtful twin leads, the outlier (more
    doubtful still, but like nothing else) comes next, the other twins last."""
    look = {"a": [0.0, 0.1], "b": [0.05, 0.1], "c": [0.1, 0.12], "odd": [3.0, 2.0]}
    doubts = {"a": 2.0, "b": 1.5, "c": 1.0, "odd": 4.0}
    ranked = [
        RankedImage(Path(f"{k}.tif"), 0.3, "", [_doubt(doubts[k])], features=np.array(look[k]))
        for k in look
    ]
    assert [r.path.stem for r in ordered(ranked, "total")] == ["odd", "a", "b", "c"]
    assert [r.path.stem for r in ordered(ranked, "spread")] == ["a", "odd", "c", "b"]
    ranked[0].features = None  # an image without features: the total order
    assert [r.path.stem for r in ordered(ranked, "spread")] == ["odd", "a", "b", "c"]


def test_spread_order_on_the_known_case(folder, model) -> None:
    ranked = rank_images(sorted(folder.glob("*.tif")), model, CPU, order="spread")
    assert ranked[0].path.name == "b_ambiguous.tif"  # the clear twins have no doubt at all
    assert all(r.features is not None and r.features.shape == (11,) for r in ranked)


def test_unknown_order_is_one_clear_error(folder, model) -> None:
    message = "unknown ranking order 'best': use one of total, mean, spread"
    with pytest.raises(CellsegError, match=message):
        rank_images(sorted(folder.glob("*.tif")), model, CPU, order="best")


def test_csv_content(folder, model, tmp_path) -> None:
    ranked = rank_images(sorted(folder.glob("*.tif")), model, CPU)
    rows = _read(write_ranking_csv(tmp_path / "out" / "r.csv", ranked, root=folder))
    assert [r["file"] for r in rows] == ["b_ambiguous.tif", "a_clear.tif", "c_clear.tif"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == [
        "rank", "file", "score", "total_doubt", "reason", "n_objects", "uncertain_fraction",
        "worst_object", "diameter",
    ]  # fmt: skip
    assert rows[0]["diameter"] == ""  # the model has no object size: not rescaled
    assert float(rows[0]["total_doubt"]) == pytest.approx(ranked[0].total_doubt)
    assert float(rows[0]["score"]) == pytest.approx(ranked[0].score)
    assert rows[0]["n_objects"] == "3" and rows[0]["worst_object"] == "2"
    assert rows[0]["reason"] == ranked[0].reason
    objects = _read(write_ranking_csv(tmp_path / "o.csv", ranked, objects=True, root=folder))
    assert len(objects) == 9
    first = objects[0]
    assert (first["file"], first["object_rank"], first["label"]) == ("b_ambiguous.tif", "1", "2")
    assert first["reason"].startswith("TTA copies disagree")
    assert (first["bbox_y0"], first["bbox_x0"], first["bbox_y1"], first["bbox_x1"]) == (
        "40", "4", "56", "18",
    )  # fmt: skip
    empty = _read(write_ranking_csv(tmp_path / "e.csv", [], objects=True))
    assert empty == [] and (tmp_path / "e.csv").read_text().startswith("rank,file,image_score")


def test_each_image_records_the_size_it_was_ranked_at(folder, model, tmp_path) -> None:
    from dataclasses import replace

    ranked = rank_images(sorted(folder.glob("*.tif")), model, replace(CPU, diameter=36))
    assert [r.diameter for r in ranked] == [36.0, 36.0, 36.0]
    rows = _read(write_ranking_csv(tmp_path / "r.csv", ranked, root=folder))
    assert [r["diameter"] for r in rows] == ["36.0", "36.0", "36.0"]
    assert size_note(ranked, 36, "--diameter N") is None  # the user gave it


def _sized(*diameters: float | None) -> list[RankedImage]:
    return [RankedImage(Path(f"{i}.tif"), 0.5, "", diameter=d) for i, d in enumerate(diameters)]


def test_size_note_says_the_size_the_model_chose_and_where_to_give_another() -> None:
    note = size_note(_sized(12, 20, 14, None), "auto", "--diameter N")
    assert note is not None and note.startswith("the model saw objects about 14 px across")
    assert "(12 to 20 px in 3 images; no diameter was given)" in note
    assert "give it (--diameter N) and rank again" in note
    alike = size_note(_sized(20, 21), None, "the Segment tab's Object diameter")
    assert alike is not None and "about 20 px across (no diameter was given)" in alike
    for given in (40, 40.0, "40", "12um", "off"):
        assert size_note(_sized(12, 20), given, "--diameter N") is None
    assert size_note(_sized(None, None), "auto", "--diameter N") is None  # nothing rescaled
    assert size_note([], None, "--diameter N") is None


def test_unreadable_images_are_left_out_with_a_warning(folder, model) -> None:
    (folder / "broken.png").write_bytes(b"not an image")
    events: list = []
    ranked = drain(iter_rank_images(sorted(folder.iterdir()), model, CPU), events.append)
    assert len(ranked) == 3
    warnings = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert len(warnings) == 1 and "broken.png: left out:" in warnings[0]
    steps = [e for e in events if isinstance(e, Progress)]
    assert {e.stage for e in steps} == {"images"} and steps[-1].fraction == 1.0
    with pytest.raises(CellsegError, match="none of the 1 image"):
        rank_images([folder / "broken.png"], model, CPU)
    with pytest.raises(CellsegError, match="no images to rank"):
        rank_images([], model, CPU)


def test_stoppable(folder, model) -> None:
    paths = sorted(folder.glob("*.tif"))
    seen: list = []
    with pytest.raises(CancelledError):
        drain(iter_rank_images(paths, model, CPU, should_stop=lambda: len(seen) > 3), seen.append)
    assert len(seen) <= 4


def test_tiles_of_a_large_image(tmp_path, model) -> None:
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(wide, np.concatenate([clear_image(), ambiguous_image()], axis=1))
    ranked = rank_images([wide], model, CPU, tile=64, keep_labels=True)
    assert [r.region for r in ranked] == [(0, 64, 64, 128), (0, 0, 64, 64)]
    top = ranked[0].objects[0]
    assert top.bbox == (40, 68, 56, 82) and top.centroid == pytest.approx((47.5, 74.5))
    assert ranked[0].labels.shape == (64, 64)
    rows = _read(write_ranking_csv(tmp_path / "t.csv", ranked))
    assert [(r["tile_x0"], r["tile_x1"]) for r in rows] == [("64", "128"), ("0", "64")]
    with pytest.raises(CellsegError, match="at least 64 pixels, got 8"):
        rank_images([wide], model, CPU, tile=8)
