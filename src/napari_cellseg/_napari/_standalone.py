"""The widgets napari docks on their own (Plugins menu), kept inside their scroll areas.

napari docks a magicgui widget's ``.native``, which for a scrollable container is the widget
*inside* its scroll area. The scroll area is then left without a parent, yet still sets the
inner widget's geometry (640 px wide by default): the Batch dialog came out wider than its
dock, clipped on the right and shifted up (seen in a screenshot). These docks hold the
scroll area itself. napari passes the viewer to a dock class by its ``__init__`` annotation.
"""

from __future__ import annotations

from typing import Any

import napari
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

BATCH_MIN_WIDTH = 400  # pixels: the Batch dialog's widest rows and a scroll bar


class ScrolledDock(QWidget):
    """A scrollable magicgui widget in its scroll area; the widget is ``cellseg_widget``."""

    def __init__(self, widget: Any) -> None:
        super().__init__()
        self.cellseg_widget = widget  # also keeps the widget and its connections alive
        self.scroll_area: QScrollArea = widget.root_native_widget
        if not isinstance(self.scroll_area, QScrollArea):
            raise TypeError(f"{type(widget).__name__} is not a scrollable container")
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.fit_width()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area)

    def fit_width(self) -> None:
        """Wide enough for the widget and a vertical scroll bar: nothing cut off on the right."""
        needed = self.cellseg_widget.native.minimumSizeHint().width()
        needed += self.scroll_area.verticalScrollBar().sizeHint().width()
        self.scroll_area.setMinimumWidth(max(self.scroll_area.minimumWidth(), needed))

    def showEvent(self, event: Any) -> None:
        """Rows filled after construction (channels, diameter) may have widened the widget."""
        self.fit_width()
        super().showEvent(event)


class BatchDock(ScrolledDock):
    """The Batch dialog (Plugins ▸ Cell Segmentation ▸ Batch segment folder…)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_cellseg._napari.batch_widget import BatchWidget

        super().__init__(BatchWidget(viewer))
        # its channel, diameter and export rows fill in after construction: leave room
        self.scroll_area.setMinimumWidth(max(self.scroll_area.minimumWidth(), BATCH_MIN_WIDTH))


class FineTuneDock(ScrolledDock):
    """The Fine-tune widget on its own (it is also a tab of the main dock)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_cellseg._napari.finetune_widget import FineTuneWidget

        super().__init__(FineTuneWidget(viewer))
