"""The one napari dock: Segment, Correct, Fine-tune, Evaluate and Measure as tabs.

Each tab is the corresponding widget (also available on its own from the Plugins menu); they
share the viewer's :class:`~napari_cellseg._napari._session.Session`, so new weights from
Fine-tune are used by Segment at once and corrections go to the same training set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

if TYPE_CHECKING:
    import napari


class CellsegDock(QWidget):
    """Tabs of the five napari-cellseg widgets for one viewer."""

    TABS = ("Segment", "Correct", "Fine-tune", "Evaluate", "Measure")

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from napari_cellseg._napari.correct_widget import CorrectWidget
        from napari_cellseg._napari.evaluate_widget import EvaluateWidget
        from napari_cellseg._napari.finetune_widget import FineTuneWidget
        from napari_cellseg._napari.measure_widget import MeasureWidget
        from napari_cellseg._napari.segment_widget import SegmentWidget

        self.viewer = viewer
        self.segment = SegmentWidget(viewer)
        self.correct = CorrectWidget(viewer)
        self.finetune = FineTuneWidget(viewer)
        self.evaluate = EvaluateWidget(viewer)
        self.measure = MeasureWidget(viewer)
        self.tabs = QTabWidget()
        for title, widget in zip(
            self.TABS,
            (self.segment, self.correct, self.finetune, self.evaluate, self.measure),
            strict=True,
        ):
            # root_native_widget keeps a scrollable widget inside its scroll area
            self.tabs.addTab(widget.root_native_widget, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
