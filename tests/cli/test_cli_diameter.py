"""``--diameter`` of cellseg predict and tune: values, the printed estimate, one-line errors."""

from __future__ import annotations

import re

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from known_output_model import known_model
from napari_cellseg.cli import main
from napari_cellseg.cli.app import build_parser
from napari_cellseg.io.images import read_labels


def _discs(diameter: int = 40, n: int = 3) -> np.ndarray:
    step = 2 * diameter + 4
    image = np.zeros((step * (n + 1),) * 2, np.uint8)
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            image[disk((i * step, j * step), diameter / 2, shape=image.shape)] = 200
    return image


@pytest.fixture
def known(monkeypatch):
    """``cellseg predict`` with the known-output model (card: objects of 20 px)."""
    from napari_cellseg import models
    from napari_cellseg.inference import model_runner

    model = known_model()
    model.card.object_diameter = 20.0
    monkeypatch.setattr(models, "read_card", lambda path: model.card)
    monkeypatch.setattr(model_runner, "cached_load", lambda path, device: (model, True))
    return model


def _predict(tmp_path, image_path, *extra):
    out = tmp_path / "out"
    args = ["predict", str(image_path), "--weights", str(tmp_path / "w.safetensors")]
    return main([*args, "--out", str(out), "--device", "cpu", "--tile", "256", *extra]), out


def test_auto_prints_the_estimated_diameter_per_image(tmp_path, capsys, known) -> None:
    png = tmp_path / "discs.png"
    iio.imwrite(png, _discs(40))
    rc, out = _predict(tmp_path, png, "--diameter", "auto")
    assert rc == 0
    line = capsys.readouterr().out.strip()
    match = re.search(r"9 objects, diameter (\d+) px \(\u00d7(0\.\d\d)\)", line)
    assert match, line
    assert 34 <= int(match[1]) <= 46 and float(match[2]) == pytest.approx(0.5, abs=0.07)
    assert read_labels(out / "discs_labels.tif").shape == (336, 336)


def test_the_default_is_the_models_and_off_prints_no_diameter(tmp_path, capsys, known) -> None:
    png = tmp_path / "discs.png"
    iio.imwrite(png, _discs(40))
    assert _predict(tmp_path, png)[0] == 0  # the card has a diameter: auto
    assert "diameter" in capsys.readouterr().out
    assert _predict(tmp_path, png, "--diameter", "off")[0] == 0
    assert "diameter" not in capsys.readouterr().out


def test_pixels_and_micrometres_with_the_files_pixel_size(tmp_path, capsys, known) -> None:
    tif = tmp_path / "discs.tif"
    tifffile.imwrite(tif, _discs(40), resolution=(2.0, 2.0), resolutionunit="MICROMETER")
    assert _predict(tmp_path, tif, "--diameter", "20\u00b5m")[0] == 0  # 0.5 um pixels
    assert "diameter 40 px (\u00d70.50)" in capsys.readouterr().out
    assert _predict(tmp_path, tif, "--diameter", "40")[0] == 0
    assert "diameter 40 px (\u00d70.50)" in capsys.readouterr().out


def test_micrometres_without_a_pixel_size_fail_that_image_in_one_line(
    tmp_path, capsys, known
) -> None:
    png = tmp_path / "discs.png"
    iio.imwrite(png, _discs(40))
    rc, _ = _predict(tmp_path, png, "--diameter", "12um")
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FAILED" in err[0] and "needs the image's pixel size" in err[0]


@pytest.mark.parametrize("value", ["1000", "1", "huge"])
def test_a_bad_diameter_is_one_line(tmp_path, capsys, known, value) -> None:
    png = tmp_path / "discs.png"
    iio.imwrite(png, _discs(20, n=1))
    rc, _ = _predict(tmp_path, png, "--diameter", value)
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("cellseg: error:") and "diameter" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["predict", "batch", "tune"])
def test_every_command_that_predicts_takes_diameter(command) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices[command].format_help().split())
    assert "--diameter auto|N|N\u00b5m|off" in text and "typical object diameter" in text


def test_batch_with_auto_ends_with_the_median_diameter_to_give(tmp_path, capsys, known) -> None:
    (tmp_path / "in").mkdir()
    for i, size in enumerate((36, 40, 44)):
        iio.imwrite(tmp_path / "in" / f"discs{i}.png", _discs(size))
    (tmp_path / "w.safetensors").write_bytes(b"")  # the known model is loaded instead
    args = ["batch", str(tmp_path / "in"), str(tmp_path / "out")]
    args += ["--weights", str(tmp_path / "w.safetensors"), "--device", "cpu", "--tile", "256"]
    assert main(args) == 0
    err = capsys.readouterr().err
    each = [float(d) for d in re.findall(r"discs\d\.png: diameter (\d+) px", err)]
    assert len(each) == 3, err
    note = re.search(r"note: object diameters estimated per image: median (\d+) px", err)
    assert note and int(note[1]) == round(sorted(each)[1]), err
    assert f"--diameter {note[1]} skips the estimate" in err
    assert main([*args, "--diameter", "40", "--overwrite"]) == 0
    assert "object diameters estimated" not in capsys.readouterr().err
