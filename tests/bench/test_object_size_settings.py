"""``bench/object_size.py --setting NAME=VALUE``: the size estimate's constants for one run,
typed as the module has them, and a clear stop for a name the module does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_cellseg.inference import diameter, quick_passes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def object_size(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    for name in ("SNAP", "REFINE_BOTH_SIDES"):  # restored after the test
        monkeypatch.setattr(diameter, name, getattr(diameter, name))
    monkeypatch.setattr(quick_passes, "ESTIMATE_SIDE", quick_passes.ESTIMATE_SIDE)
    import object_size

    return object_size


def test_settings_take_the_constants_types(object_size) -> None:
    done = object_size.apply_settings(["SNAP=1.05", "REFINE_BOTH_SIDES=False", "ESTIMATE_SIDE=384"])
    assert done == {"SNAP": 1.05, "REFINE_BOTH_SIDES": False, "ESTIMATE_SIDE": 384}
    assert diameter.SNAP == 1.05 and diameter.REFINE_BOTH_SIDES is False
    assert isinstance(quick_passes.ESTIMATE_SIDE, int) and quick_passes.ESTIMATE_SIDE == 384


@pytest.mark.parametrize("item", ["NO_SUCH=1", "iter_estimate_diameter=1"])
def test_an_unknown_setting_stops_with_its_name(object_size, item) -> None:
    with pytest.raises(SystemExit, match="no constant"):
        object_size.apply_settings([item])
