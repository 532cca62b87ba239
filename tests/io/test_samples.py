"""The bundled DSB 2018 samples: present, readable, masks matching their images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cellseg.errors import CellsegError
from napari_cellseg.io import samples
from napari_cellseg.io.images import read_image, read_labels
from napari_cellseg.io.samples import SAMPLE_KINDS, Sample, get_sample, list_samples

SAMPLES = list_samples()


def test_three_samples_covering_all_kinds() -> None:
    assert len(SAMPLES) == 3
    assert {s.kind for s in SAMPLES} == {"fluorescence", "brightfield", "he"} == set(SAMPLE_KINDS)
    assert len({s.key for s in SAMPLES}) == 3
    for sample in SAMPLES:
        assert isinstance(sample, Sample)
        assert sample.title
        assert sample.image_path.is_file() and sample.mask_path.is_file()
        assert sample.image_path.stem == sample.mask_path.stem == sample.key


def test_sample_dir_layout() -> None:
    folder = samples.sample_data_dir()
    assert folder.is_absolute()
    assert (folder / "images").is_dir() and (folder / "masks").is_dir()
    assert (folder / "README.md").is_file()
    files = [p for p in folder.rglob("*") if p.is_file() and "models" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 1.5e6  # the sample images stay small
    for weights in (folder / "models").glob("*.safetensors"):
        assert weights.stat().st_size <= 25 * 2**20, weights  # demo weights: 25 MB each at most


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.key for s in SAMPLES])
def test_image_reads_and_mask_matches(sample: Sample) -> None:
    image = read_image(sample.image_path)
    assert image.axes == "YXS"
    assert image.data.dtype == np.uint8
    assert image.data.shape[-1] == 4
    height, width = image.data.shape[:2]
    assert min(height, width) >= 256 and max(height, width) <= 520
    labels = read_labels(sample.mask_path)
    assert labels.shape == (height, width)
    assert labels.dtype == np.uint16
    ids = np.unique(labels)
    assert ids[0] == 0
    np.testing.assert_array_equal(ids[1:], np.arange(1, labels.max() + 1))  # consecutive
    assert labels.max() >= 10


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.key for s in SAMPLES])
def test_kind_matches_pixels(sample: Sample) -> None:
    rgb = read_image(sample.image_path).data[..., :3].astype(np.int16)
    grey = bool(np.all(rgb == rgb[..., :1]))
    mean = float(rgb.mean())
    if sample.kind == "fluorescence":
        assert grey and mean < 60  # dark background
    elif sample.kind == "brightfield":
        assert grey and mean > 150  # light background
    else:
        assert not grey
        red, green, blue = (float(rgb[..., c].mean()) for c in range(3))
        assert red > green and blue > green  # pink/purple stain


def test_get_sample_by_key_and_kind() -> None:
    assert get_sample("dsb_he").kind == "he"
    assert get_sample("fluorescence").key == "dsb_fluorescence"
    with pytest.raises(CellsegError, match=r"unknown sample 'nope'.*dsb_brightfield"):
        get_sample("nope")


def test_missing_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "napari_cellseg"
    (fake_pkg / "core").mkdir(parents=True)
    monkeypatch.setattr(samples, "__file__", str(fake_pkg / "core" / "samples.py"))
    with pytest.raises(CellsegError, match="sample data folder not found"):
        samples.sample_data_dir()
    with pytest.raises(CellsegError, match="sample data folder not found"):
        list_samples()
