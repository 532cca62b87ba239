"""The rows that join a stack's objects (stitch in 3D, link over time, their settings), built
one way for the Segment tab's options and the Batch dialog."""

from __future__ import annotations

from typing import Any, NamedTuple

from magicgui.widgets import CheckBox, Container, FloatSpinBox, SpinBox

from napari_cellseg.params import PredictParams, field_info


class JoinRows(NamedTuple):
    """The checkboxes, the row holding them side by side, and the two settings' rows."""

    stitch_3d: CheckBox
    link_time: CheckBox
    joining: Container
    stitch_iou: FloatSpinBox
    max_gap: SpinBox


def join_rows(values: PredictParams, time_tooltip: str) -> JoinRows:
    """The rows of ``stitch_3d``, ``link_time``, ``stitch_iou`` and ``max_gap`` showing
    ``values``; ``time_tooltip`` ends the link box's tooltip (where the time axis comes from)."""

    def info(name: str) -> dict[str, Any]:
        return field_info(PredictParams, name).widget_options()

    stitch_3d, link_time = (
        CheckBox(name=name, value=getattr(values, name), text=info(name)["label"],
                 tooltip=info(name)["tooltip"])
        for name in ("stitch_3d", "link_time")
    )  # fmt: skip
    link_time.tooltip += time_tooltip
    joining = Container(
        name="joining", label="Stacks", layout="horizontal", labels=False,
        widgets=[stitch_3d, link_time],
    )  # fmt: skip
    joining.margins = (0, 0, 0, 0)
    stitch_iou = FloatSpinBox(
        name="stitch_iou", value=values.stitch_iou, step=0.05, **info("stitch_iou")
    )
    max_gap = SpinBox(name="max_gap", value=values.max_gap, **info("max_gap"))
    return JoinRows(stitch_3d, link_time, joining, stitch_iou, max_gap)
