"""The Batch dialog's z-stack / time-lapse rows: stitch in 3D, link over time, their settings.

The same options as the Segment tab's (``PredictParams.stitch_3d``, ``link_time``,
``stitch_iou``, ``max_gap``) plus ``z_spacing``, which a folder of files takes from each
file's metadata unless set here (0 shows "from each file"). They are part of the batch
recipe (:mod:`napari_cellseg.batch.recipe`), so a rerun with other values is refused
unless "Replace other settings' results" is ticked.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import FloatSpinBox, Widget

from napari_cellseg._napari._join_rows import join_rows
from napari_cellseg.params import PredictParams, field_info

FROM_FILE = "from each file"
TIME_AXIS = "; a file is linked over its T axis (its own, or set File axes, e.g. TYX)"


def _info(name: str) -> dict[str, Any]:
    return field_info(PredictParams, name).widget_options()


class BatchStackRows:
    """Stitch 3D / Link over time checkboxes in one row, and the rows they use."""

    def __init__(self) -> None:
        defaults = PredictParams()
        rows = join_rows(defaults, TIME_AXIS)
        self.stitch_3d, self.link_time, self.joining, self.stitch_iou, self.max_gap = rows
        z_options = {**_info("z_spacing"), "min": 0.0, "max": 1000.0}
        self.z_spacing = FloatSpinBox(name="z_spacing", value=0.0, step=0.5, **z_options)
        self.z_spacing.native.setSpecialValueText(FROM_FILE)  # shown at 0 (the minimum)
        self.z_spacing.tooltip = (
            f"{self.z_spacing.tooltip}; 0 ({FROM_FILE}): the file's z step, else 1"
        )
        for box in (self.stitch_3d, self.link_time):
            box.changed.connect(self._show_rows)
        self._show_rows()

    @property
    def widgets(self) -> list[Widget]:
        """The rows, in display order."""
        return [self.joining, self.stitch_iou, self.max_gap, self.z_spacing]

    def params_values(self) -> dict[str, Any]:
        """``stitch_3d``, ``link_time``, ``stitch_iou``, ``max_gap``, ``z_spacing``.

        ``z_spacing`` is ``None`` (each file's own) when the row shows 0.
        """
        z = float(self.z_spacing.value)
        return {
            "stitch_3d": bool(self.stitch_3d.value),
            "link_time": bool(self.link_time.value),
            "stitch_iou": float(self.stitch_iou.value),
            "max_gap": int(self.max_gap.value),
            "z_spacing": z if z > 0 else None,
        }

    def _show_rows(self, _value: Any = None) -> None:
        stitch, link = bool(self.stitch_3d.value), bool(self.link_time.value)
        self.stitch_iou.visible = stitch or link
        self.max_gap.visible = link
        self.z_spacing.visible = stitch
