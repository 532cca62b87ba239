"""cellseg rank: the CSV, --objects, and the usual clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import tifffile

from doubtful_model import ambiguous_image, clear_image, doubtful_model
from napari_cellseg.cli import main
from tiny_models import save_tiny


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny("unet", tmp_path_factory.mktemp("w") / "u.safetensors")


@pytest.fixture
def scripted(monkeypatch):
    """The weight file's card is read, but the doubtful model runs."""
    from napari_cellseg.inference import model_runner

    monkeypatch.setattr(model_runner, "cached_load", lambda *_a, **_k: (doubtful_model(), True))


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "clear.tif", clear_image())
    tifffile.imwrite(folder / "ambiguous.tif", ambiguous_image())
    return folder


def test_rank_writes_the_csv_most_doubtful_first(tmp_path, capsys, weights, scripted) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "ranking.csv"
    rc = main(["rank", str(folder), "--weights", str(weights), "--out", str(out), "--objects"])
    assert rc == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["rank"], r["file"]) for r in rows] == [("1", "ambiguous.tif"), ("2", "clear.tif")]
    assert rows[0]["reason"] and float(rows[0]["score"]) > float(rows[1]["score"])
    with open(tmp_path / "ranking_objects.csv", newline="") as f:
        objects = list(csv.DictReader(f))
    assert len(objects) == 6 and objects[0]["reason"].startswith("TTA copies disagree")
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("1. ambiguous.tif: ")
    assert f"ranked 2 image(s) -> {out}" in printed


def test_rank_says_the_size_it_chose_when_none_was_given(tmp_path, capsys, weights, monkeypatch):
    """A fine-tuned model's own object size (no --diameter): the note says it, the CSV has it."""
    from dataclasses import replace

    from napari_cellseg.inference import model_runner

    model = doubtful_model()
    model = replace(model, card=replace(model.card, default_diameter=18.0))
    monkeypatch.setattr(model_runner, "cached_load", lambda *_a, **_k: (model, True))
    out = tmp_path / "ranking.csv"
    assert main(["rank", str(_folder(tmp_path)), "--weights", str(weights), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        assert [r["diameter"] for r in csv.DictReader(f)] == ["18.0", "18.0"]
    err = capsys.readouterr().err
    assert "note: the model saw objects about 18 px across (no diameter was given)" in err
    assert "give it (--diameter N) and rank again" in err
    args = ["rank", str(tmp_path / "images"), "--weights", str(weights), "--out", str(out)]
    assert main([*args, "--diameter", "18"]) == 0
    assert "the model saw objects" not in capsys.readouterr().err


def test_help_names_the_diameter_column_and_note(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "diameter column" in text and "give your objects' size (--diameter N)" in text


@pytest.mark.parametrize("order", ["total", "mean"])
def test_rank_order_option(tmp_path, capsys, weights, scripted, order) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "ranking.csv"
    args = ["rank", str(folder), "--weights", str(weights), "--out", str(out), "--order", order]
    assert main(args) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["ambiguous.tif", "clear.tif"]
    assert float(rows[0]["total_doubt"]) > float(rows[1]["total_doubt"])
    assert "total doubt" in capsys.readouterr().out


def test_order_choices_are_the_cores() -> None:
    import argparse

    from napari_cellseg.batch.ranking import RANK_ORDERS
    from napari_cellseg.cli.rank import add_rank_parser

    parser = argparse.ArgumentParser()
    add_rank_parser(parser.add_subparsers())
    rank = parser._subparsers._group_actions[0].choices["rank"]
    order = next(a for a in rank._actions if a.dest == "order")
    assert tuple(order.choices) == RANK_ORDERS and order.default == RANK_ORDERS[0]


def test_unreadable_image_is_reported_and_exit_1(tmp_path, capsys, weights, scripted) -> None:
    folder = _folder(tmp_path)
    (folder / "zz.png").write_bytes(b"junk")
    out = tmp_path / "r.csv"
    assert main(["rank", str(folder), "--weights", str(weights), "--out", str(out)]) == 1
    assert "zz.png: left out:" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3  # the header and the two good images


def test_rank_with_the_tiny_model(tmp_path, weights) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "r.csv"
    rc = main(["rank", str(folder), "--weights", str(weights), "--out", str(out), "--tta", "2"])
    assert rc == 0 and len(out.read_text().splitlines()) == 3


def test_clear_errors(tmp_path, capsys, weights) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["rank", str(empty), "--weights", str(weights)]) == 2
    assert "no image files found" in capsys.readouterr().err
    folder = _folder(tmp_path)
    assert main(["rank", str(folder), "--weights", str(weights), "--out", str(tmp_path)]) == 2
    assert "is a folder; give a CSV file name" in capsys.readouterr().err
    assert main(["rank", str(tmp_path / "nope"), "--weights", str(weights)]) == 2
    assert "input not found" in capsys.readouterr().err


def test_rank_by_tile(tmp_path, capsys, weights, scripted) -> None:
    import numpy as np

    image = tmp_path / "wide.tif"
    tifffile.imwrite(image, np.concatenate([clear_image(), ambiguous_image()], axis=1))
    out = tmp_path / "t.csv"
    rc = main(["rank", str(image), "--weights", str(weights), "--out", str(out), "--by-tile", "64"])
    assert rc == 0
    assert "1. wide.tif [0:64, 64:128]: " in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["tile_x0"] for r in rows] == ["64", "0"]
