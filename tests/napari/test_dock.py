"""The one dock: four tabs sharing the viewer's session."""

from __future__ import annotations

import pytest

from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.dock import CellsegDock

pytestmark = pytest.mark.gui


def test_dock_has_four_tabs_sharing_one_session(make_napari_viewer, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    dock = CellsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="napari-cellseg")
    titles = [dock.tabs.tabText(i) for i in range(dock.tabs.count())]
    assert titles == ["Segment", "Correct", "Fine-tune", "Evaluate"]
    new_weights = tmp_path / "new.safetensors"
    session_for(viewer).weights = new_weights
    assert session_for(viewer).weights == new_weights  # the fine-tune tab's "use new weights"


def test_plugin_menu_opens_the_dock(make_napari_viewer, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellseg", "Cell segmentation")
    assert isinstance(widget, CellsegDock)
