"""The one dock: five tabs sharing the viewer's session."""

from __future__ import annotations

import pytest

from napari_cellseg._napari._session import session_for
from napari_cellseg._napari.dock import CellsegDock

pytestmark = pytest.mark.gui


def test_dock_has_five_tabs_sharing_one_session(make_napari_viewer, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    dock = CellsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="napari-cellseg")
    titles = [dock.tabs.tabText(i) for i in range(dock.tabs.count())]
    assert titles == ["Segment", "Correct", "Fine-tune", "Evaluate", "Measure"]
    from tiny_models import save_tiny

    # the fine-tune tab's "use new weights" sets the session's: the Segment tab must follow
    new_weights = save_tiny("unet", tmp_path / "new.safetensors")
    session_for(viewer).weights = new_weights
    assert dock.segment._weights.value == new_weights.resolve()
    assert dock.segment._model_card is not None and dock.segment._model_card.family == "unet"


def test_plugin_menu_opens_the_dock(make_napari_viewer, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellseg", "Cell segmentation")
    assert isinstance(widget, CellsegDock)


@pytest.mark.parametrize(
    ("menu_name", "kind"),
    [("Batch segment folder…", "BatchWidget"), ("Fine-tune", "FineTuneWidget")],
)
def test_standalone_docks_keep_their_scroll_area_and_fit(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, menu_name, kind
) -> None:
    """napari docks ``.native``; a scrollable widget's inner part was clipped (screenshot)."""
    from qtpy.QtWidgets import QScrollArea

    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1200, 900)
    _dock, holder = viewer.window.add_plugin_dock_widget("napari-cellseg", menu_name)
    assert type(holder.cellseg_widget).__name__ == kind
    root = holder.scroll_area
    assert isinstance(root, QScrollArea) and root.parent() is holder
    inner = root.widget()
    assert inner is holder.cellseg_widget.native
    # nothing cut off on the right (it was 624 px wide in a 374 px dock), nothing shifted up
    qtbot.waitUntil(lambda: 0 < inner.width() <= root.viewport().width(), timeout=3000)
    assert inner.y() == 0 and root.verticalScrollBar().value() == 0


def test_warmup_imports_then_freezes_the_collector_unless_disabled() -> None:
    """In a fresh process (the suite itself runs with the freeze disabled)."""
    import os
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "from napari_cellseg._napari import _warmup\n"
        "assert _warmup.wait_for_warmup()\n"  # not started: nothing to wait for
        "_warmup.start_warmup(); assert _warmup.wait_for_warmup(300)\n"
        "assert 'torchvision' in sys.modules and 'pandas' in sys.modules\n"
        "assert 'skimage.color' in sys.modules\n"
        "from vispy.visuals.line.dash_atlas import _make_pattern\n"
        "assert _make_pattern.cache_info().currsize >= 13\n"  # vispy's 13 dash styles
        "print(gc.get_freeze_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_CELLSEG_NO_GC_FREEZE"}
    frozen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert frozen.returncode == 0, frozen.stderr
    assert int(frozen.stdout.split()[-1]) > 10_000
    env["NAPARI_CELLSEG_NO_GC_FREEZE"] = "1"
    kept = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert kept.returncode == 0 and int(kept.stdout.split()[-1]) == 0, kept.stderr


def test_plugin_menu_opens_the_measure_widget(make_napari_viewer, monkeypatch, tmp_path) -> None:
    from napari_cellseg._napari.measure_widget import MeasureWidget

    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellseg", "Measure")
    assert isinstance(widget, MeasureWidget)
