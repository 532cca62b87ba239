"""``bench/inference.py``'s mosaics say what they are made of and fall back to real images.

The session-14 GPU run carried only DSB images; the U-Net rows above 1024², which ask for a
GlaS mosaic, then silently timed noise. A missing folder now falls back to the other real
source, and noise is named as such.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_inference(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import inference

    yield inference
    sys.modules.pop("inference", None)


def _write(folder: Path, n: int, value: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 12, 3), value + i, np.uint8)).save(folder / f"{i}.png")


def test_a_missing_glas_folder_falls_back_to_dsb(tmp_path: Path, bench_inference, capsys) -> None:
    _write(tmp_path / "dsb2018/stage1_train/images", 3, 10)
    name, files = bench_inference.mosaic_source("glas", tmp_path)
    assert name == "dsb mosaic (glas missing)"
    assert len(files) == 3
    image = bench_inference.mosaic(32, "glas", tmp_path)
    assert image.shape == (32, 32, 3)
    assert set(np.unique(image)) <= {10, 11, 12}  # only the DSB pixels, no noise
    assert capsys.readouterr().err == ""


def test_no_images_at_all_is_named_noise(tmp_path: Path, bench_inference, capsys) -> None:
    name, files = bench_inference.mosaic_source("dsb", tmp_path)
    assert (name, files) == ("synthetic noise (no images found)", [])
    assert "timing synthetic noise" in capsys.readouterr().err
    _write(tmp_path / "glas/train/images", 1, 50)
    assert bench_inference.mosaic_source("glas", tmp_path)[0] == "glas mosaic"
