"""``diameter="auto"``: the final run reuses the size estimate's pass at the chosen scale when
that pass saw the whole image, and its labels are those of running the network again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cellseg.inference import api, planes
from napari_cellseg.inference.api import predict
from napari_cellseg.io.images import read_image
from napari_cellseg.params import PredictParams

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _runs(monkeypatch, reuse: bool) -> list:
    """Record every final-run call of iter_predict_planes (with or without the reuse)."""
    calls: list = []
    real = planes.iter_predict_planes

    def spy(*args, **kwargs):
        if "network_output" in kwargs:  # the final run (the quick passes do not pass it)
            calls.append(kwargs["network_output"] is not None)
            if not reuse:
                kwargs["network_output"] = None
        return real(*args, **kwargs)

    monkeypatch.setattr(api._planes, "iter_predict_planes", spy)
    return calls


@pytest.mark.parametrize("sample", ["dsb_fluorescence", "dsb_he"])
def test_auto_reuses_the_chosen_pass_with_the_same_labels(demo_unet, monkeypatch, sample):
    image = np.asarray(read_image(SAMPLE / "images" / f"{sample}.png").data)[..., :3]
    params = PredictParams(backend="torch")  # diameter auto: the demo model's default
    calls = _runs(monkeypatch, reuse=True)
    reused = predict(image, demo_unet, params)
    assert calls == [True], "the chosen scale's quick pass covered the whole image"
    assert reused.timings["network"] < 0.01
    calls = _runs(monkeypatch, reuse=False)
    again = predict(image, demo_unet, params)
    assert (reused.scale, reused.diameter) == (again.scale, again.diameter)
    assert reused.n_objects > 5
    np.testing.assert_array_equal(reused.labels, again.labels)
    np.testing.assert_array_equal(reused.raw[0], again.raw[0])


def test_no_reuse_with_test_time_augmentation_or_a_given_diameter(demo_unet, monkeypatch):
    image = np.asarray(read_image(SAMPLE / "images" / "dsb_fluorescence.png").data)[..., :3]
    calls = _runs(monkeypatch, reuse=True)
    predict(image, demo_unet, PredictParams(backend="torch", tta=2))
    predict(image, demo_unet, PredictParams(backend="torch", diameter=20))
    assert calls == [False, False]
