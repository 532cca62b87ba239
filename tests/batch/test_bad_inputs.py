"""A corpus of bad inputs: each gets one clear line naming the file, the rest of the batch
completes, and nothing partial is left behind. Bad weights and parameters are refused
before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tifffile
from bad_corpus import FAILING, GOOD, SUCCEEDING, Maker, truncated, write_bytes
from batch_helpers import PARAMS, disk_image, tmp_files, write_png

from event_helpers import collect
from napari_cellseg.batch import FileResult, iter_batch, run_batch
from napari_cellseg.cli import main
from napari_cellseg.errors import CellsegError
from napari_cellseg.io.images import read_labels


def _run(
    tmp_path: Path, weights: Path, maker: Maker, how: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, list]:
    """A batch of one good image and the item `maker` creates (as a folder or a list)."""
    folder = tmp_path / "in"
    good = write_png(folder / GOOD, disk_image(0, 64))
    bad = maker(folder, monkeypatch)
    out = tmp_path / "out"
    inputs = folder if how == "dir" else [good, bad]
    summary, events = collect(iter_batch(inputs, out, weights, PARAMS, measure=True))
    return bad, out, events, summary


@pytest.mark.parametrize("kind", list(FAILING))
def test_bad_input_fails_alone_with_a_clear_message(tmp_path, weights, monkeypatch, kind) -> None:
    maker, fragment, how = FAILING[kind]
    bad, out, events, summary = _run(tmp_path, weights, maker, how, monkeypatch)
    results = {Path(r.file).name: r for r in events if isinstance(r, FileResult)}
    assert results[GOOD].status == "done" and Path(results[GOOD].labels).is_file()
    failed = [r for r in results.values() if r.status == "failed"]
    assert failed and all(r.file != str(tmp_path / "in" / GOOD) for r in failed)
    result = results[bad.name]
    print(f"\n{kind} -> {result.reason}")
    assert fragment in result.reason, result.reason
    assert "\n" not in result.reason and result.message().startswith(str(bad))
    assert summary.failed == len(failed) and summary.done == 1 and not summary.cancelled
    # errors.csv and the manifest name the file and the reason
    with open(out / "errors.csv", newline="") as fh:
        rows = {row["file"]: row["reason"] for row in csv.DictReader(fh)}
    assert rows[str(bad)] == result.reason
    manifest = json.loads((out / "batch_manifest.json").read_text())
    assert manifest["state"] == "complete"
    # nothing partial: no temporary file, no labels or measurements for the bad file
    assert not tmp_files(out) and not tmp_files(tmp_path / "in")
    stem = bad.name.split(".")[0]
    leftovers = [p for p in out.rglob(f"{stem}_*") if p.is_file()]
    assert leftovers == []
    assert read_labels(results[GOOD].labels).shape == (64, 64)


@pytest.mark.parametrize("kind", list(SUCCEEDING))
def test_unusual_but_valid_input_succeeds(tmp_path, weights, monkeypatch, kind) -> None:
    good, out, _events, summary = _run(tmp_path, weights, SUCCEEDING[kind], "dir", monkeypatch)
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    stem = good.name.split(".")[0]
    labels = read_labels(out / f"{stem}_labels.tif") if "5-D" not in kind else None
    if labels is not None:
        assert labels.shape == (64, 64)
    else:
        stack = tifffile.imread(out / f"{stem}_labels.tif")
        assert stack.shape == (2, 2, 32, 32) and stack.dtype.kind == "u"
        header = (out / f"{stem}_measurements.csv").read_text().splitlines()[0]
        assert header.startswith("t,z,label,")
    assert not tmp_files(out)


class _CreatesAFile:
    """Unpickling this would create a file: the marker of code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_weights(kind: str, folder: Path, weights: Path) -> tuple[Path, str]:
    import torch
    from safetensors.torch import save_file

    if kind == "not a weight file":
        path = write_bytes(folder / "model.safetensors", b"hello, I am a text file\n" * 10)
        return path, "model.safetensors"
    if kind == "truncated .safetensors":
        return truncated(Path(_copy(weights, folder / "cut.safetensors")), 0.5), "truncated"
    if kind == "pickle carrying code":
        path = folder / "evil.pth"
        payload = {"w": torch.zeros(1), "hook": _CreatesAFile(str(folder / "PWNED"))}
        torch.save({"state_dict": payload}, path)
        return path, "refused"
    if kind == "weights of an unknown architecture":
        path = folder / "classifier.safetensors"
        save_file({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, str(path))
        return path, "unknown architecture"
    return folder / "nowhere.safetensors", "not found"


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize(
    "kind",
    [
        "not a weight file",
        "truncated .safetensors",
        "pickle carrying code",
        "weights of an unknown architecture",
        "missing weight file",
    ],
)
def test_bad_weights_are_refused_before_anything_is_written(tmp_path, weights, kind) -> None:
    write_png(tmp_path / "in" / GOOD, disk_image(0, 64))
    path, fragment = _bad_weights(kind, tmp_path, weights)
    with pytest.raises(CellsegError) as error:
        run_batch(tmp_path / "in", tmp_path / "out", path, PARAMS)
    message = str(error.value)
    print(f"\n{kind} -> {message}")
    assert str(path) in message and fragment in message and "\n" not in message
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "PWNED").exists(), "unpickling ran the payload"
    rc = main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(path)])
    assert rc == 2 and not (tmp_path / "PWNED").exists()


USER_ERRORS = {
    "absurd tile size": (["--tile", "1000000"], "tile size 1000000 is out of range"),
    "tile too small": (["--tile", "8"], "tile size 8 is out of range"),
    "overlap of half the tile": (["--tile", "64", "--overlap", "32"], "overlap 32 must be"),
    "batch size 0": (["--batch-size", "0"], "batch size must be between 1 and 256"),
    "unknown scheduler": (["--scheduler", "ftp://x"], "unknown scheduler 'ftp://x'"),
    "zero workers": (["--scheduler", "local", "--workers", "0"], "workers must be between"),
    "prefetch 0": (["--prefetch", "0"], "prefetch must be between 1 and 64"),
    "channel index out of range": (["--channels", "0,1,-1"], "channel indices must be >= 0"),
    "unknown device": (["--device", "tpu"], "unknown device 'tpu'"),
}


@pytest.mark.parametrize("kind", list(USER_ERRORS))
def test_bad_parameters_exit_2_with_one_line(tmp_path, weights, capsys, kind) -> None:
    write_png(tmp_path / "in" / GOOD, disk_image(0, 64))
    flags, fragment = USER_ERRORS[kind]
    rc = main(
        ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(weights), *flags]
    )
    err = capsys.readouterr().err.strip()
    print(f"\n{kind} -> {err}")
    assert rc == 2 and fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["missing input", "empty folder", "output is a file", "no match"])
def test_bad_folders_are_user_errors(tmp_path, weights, kind) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out"
    include = None
    if kind == "missing input":
        folder = tmp_path / "nope"
    elif kind == "output is a file":
        write_png(folder / GOOD, disk_image(0, 64))
        out.write_text("a file")
    elif kind == "no match":
        write_png(folder / GOOD, disk_image(0, 64))
        include = ["*.czi"]
    with pytest.raises(CellsegError) as error:
        run_batch(folder, out, weights, PARAMS, include=include)
    print(f"\n{kind} -> {error.value}")
    assert "\n" not in str(error.value)
