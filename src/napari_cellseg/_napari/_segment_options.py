"""The Segment dock's parameter widgets and the request one run is made from.

``SegmentOptions`` builds the parameter widgets from the defaults of
:class:`~napari_cellseg.params.PredictParams` and
:class:`~napari_cellseg.params.PostprocessParams` (one source of defaults);
``build_request`` reads them, with the chosen image and weights, into a :class:`RunRequest`
on the GUI thread when Run is pressed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSlider,
    RadioButtons,
    SpinBox,
    Widget,
)
from napari.layers import Image

from napari_cellseg._napari import _layers
from napari_cellseg._napari._join_rows import join_rows
from napari_cellseg.errors import CellsegError
from napari_cellseg.families import FAMILIES, family_spec
from napari_cellseg.params import PostprocessParams, PredictParams, field_info

THRESHOLD_NAMES = (
    "prob_threshold",
    "boundary_threshold",
    "score_threshold",
    "mask_threshold",
    "nms_iou",
)
"""The post-processing fields shown as sliders (labels, tooltips and ranges: their metadata)."""
PLANES = ("current", "all")
ONE_AXIS_TIME = "; a layer with one leading axis is then taken for a time-lapse"

TTA_LABELS = [("off", 1), ("×2 (flip)", 2), ("×4 (flips)", 4), ("×8 (flips, rotations)", 8)]
BACKEND_LABELS = [
    ("auto", "auto"),
    ("PyTorch", "torch"),
    ("ONNX Runtime", "onnx"),
    ("int8 (U-Nets, fastest)", "int8"),
    ("bfloat16 (fast CPUs)", "bf16"),
]
"""The Backend choices (``PredictParams.backend``); only the CPU uses them."""


class SegmentOptions:
    """The parameter widgets (named as the dataclass fields they set)."""

    def __init__(self) -> None:
        predict, post = PredictParams(), PostprocessParams()
        self.tile_size = SpinBox(
            name="tile_size", value=predict.tile_size, step=32,
            **field_info(PredictParams, "tile_size").widget_options(),
        )  # fmt: skip
        self.overlap = SpinBox(
            name="overlap", value=predict.overlap, min=0, max=predict.tile_size // 2 - 1,
            step=8, **field_info(PredictParams, "overlap").widget_options(),
        )  # fmt: skip
        self.thresholds = {
            name: FloatSlider(
                name=name, value=getattr(post, name), step=0.01,
                **field_info(PostprocessParams, name).widget_options(),
            )
            for name in THRESHOLD_NAMES
        }  # fmt: skip
        self.min_size = SpinBox(
            name="min_size", value=post.min_size, max=10_000_000,
            **field_info(PostprocessParams, "min_size").widget_options(),
        )  # fmt: skip
        self.tta = ComboBox(
            name="tta", choices=TTA_LABELS, value=predict.tta,
            **field_info(PredictParams, "tta").widget_options(),
        )  # fmt: skip
        self.backend = ComboBox(
            name="backend", choices=BACKEND_LABELS, value=predict.backend,
            **field_info(PredictParams, "backend").widget_options(),
        )  # fmt: skip
        self.planes = RadioButtons(
            name="planes", label="Planes", choices=PLANES, value="current",
            orientation="horizontal", tooltip="z-stacks and time-lapses: the plane shown, or all",
        )  # fmt: skip
        self.probabilities = CheckBox(
            name="probabilities", text="probability map", value=predict.keep_probabilities
        )
        self.boxes = CheckBox(name="boxes", text="boxes with scores", value=False)
        self.invert = CheckBox(
            name="invert", text="invert (dark objects on a bright background)",
            value=predict.invert, tooltip=field_info(PredictParams, "invert").help,
        )  # fmt: skip
        rows = join_rows(predict, ONE_AXIS_TIME)
        self.stitch_3d, self.link_time, self.joining, self.stitch_iou, self.max_gap = rows
        for widget in (self.stitch_3d, self.link_time):
            widget.changed.connect(self._show_join_options)
        self._show_join_options()
        self.tile_size.changed.connect(self._limit_overlap)

    @property
    def widgets(self) -> list[Widget]:
        """All parameter widgets, in display order."""
        return [
            self.tile_size, self.overlap, *self.thresholds.values(), self.min_size,
            self.tta, self.backend, self.planes, self.joining, self.stitch_iou, self.max_gap,
            self.invert, self.probabilities, self.boxes,
        ]  # fmt: skip

    @property
    def post_widgets(self) -> list[Widget]:
        """The widgets whose change re-applies post-processing."""
        return [*self.thresholds.values(), self.min_size]

    @property
    def join_widgets(self) -> list[Widget]:
        """The widgets whose change re-joins the planes' objects (no network)."""
        return [self.stitch_3d, self.link_time, self.stitch_iou, self.max_gap]

    def join_values(self) -> dict[str, Any]:
        """``stitch_3d``, ``link_time``, ``stitch_iou`` and ``max_gap`` as the widgets say."""
        return {
            "stitch_3d": bool(self.stitch_3d.value),
            "link_time": bool(self.link_time.value),
            "stitch_iou": float(self.stitch_iou.value),
            "max_gap": int(self.max_gap.value),
        }

    def _show_join_options(self, _value: Any = None) -> None:
        self.stitch_iou.visible = bool(self.stitch_3d.value or self.link_time.value)
        self.max_gap.visible = bool(self.link_time.value)

    def _limit_overlap(self, tile: int) -> None:
        self.overlap.max = max(0, int(tile) // 2 - 1)

    def set_family(self, family: str | None) -> None:
        """Show only the thresholds and outputs that the model family uses."""
        spec = FAMILIES.get(family) if family is not None else None
        used = spec.thresholds if spec is not None else ()
        for name, slider in self.thresholds.items():
            slider.visible = name in used
        self.probabilities.visible = spec is not None and spec.probability_map
        self.boxes.visible = spec is not None and spec.boxes

    def show_post(self, post: PostprocessParams) -> None:
        """Set the sliders and minimum size to ``post`` (a model's own values), silently.

        The widgets' ``changed`` signals are blocked: picking a model must not re-apply
        its thresholds to another model's kept output.
        """
        for name, slider in self.thresholds.items():
            with slider.changed.blocked():
                slider.value = getattr(post, name)
        with self.min_size.changed.blocked():
            self.min_size.value = post.min_size

    def post_params(self, base: PostprocessParams | None = None) -> PostprocessParams:
        """``base`` (or the defaults) with the values of the widgets."""
        values = {name: float(w.value) for name, w in self.thresholds.items()}
        return replace(base or PostprocessParams(), min_size=int(self.min_size.value), **values)

    def predict_params(
        self,
        *,
        device: str,
        axes: str,
        family: str,
        base: PostprocessParams | None = None,
        diameter: float | str | None = None,
        channels: tuple[int, ...] | None = None,
    ) -> PredictParams:
        """The parameters of one run (raises CellsegError for inconsistent values).

        ``base`` (the model's own post-processing) supplies what has no widget; ``diameter``
        is the Object diameter row's value (in px, or auto / off); ``channels`` the image
        channels fed to the model's inputs (the Channels row's).
        """
        return PredictParams(
            device=device,
            tile_size=int(self.tile_size.value),
            overlap=int(self.overlap.value),
            axes=axes,
            channels=channels,
            keep_probabilities=bool(self.probabilities.value)
            and family_spec(family).probability_map,
            tta=int(self.tta.value),
            backend=str(self.backend.value),
            invert=bool(self.invert.value),
            post=self.post_params(base),
            diameter=diameter,
            **self.join_values(),
        )


def z_spacing(layer: Image, axes: str) -> float | None:
    """The layer's z step over its xy pixel size (``None`` when its scale says nothing).

    ``axes``: the layer data's axes (``ZYX``, ``TZYXC``...), whose leading letters are the
    layer's first dimensions.
    """
    scale = [float(s) for s in layer.scale]
    if "Z" not in axes or len(scale) < axes.index("Y") + 2:
        return None
    z, y, x = scale[axes.index("Z")], scale[axes.index("Y")], scale[axes.index("X")]
    ratio = z / (y * x) ** 0.5 if y > 0 and x > 0 else 1.0
    return None if abs(ratio - 1.0) < 1e-6 or ratio <= 0 else ratio


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, captured on the GUI thread when Run is pressed."""

    source: _layers.ImageInput
    params: PredictParams
    target: _layers.ResultTarget


def build_request(
    viewer: napari.Viewer,
    options: SegmentOptions,
    *,
    image: Image | None,
    weights: Path | None,
    card: Any,
    device: str,
    diameter: Any = None,
    channels: Any = None,
) -> RunRequest:
    """Read the dock into a :class:`RunRequest` (CellsegError says what is missing).

    ``diameter``: the :class:`~._diameter_row.DiameterRow` (its value for this image);
    ``channels``: the :class:`~._channel_row.ChannelRow` (the layer's axes and channels).
    """
    if image is None:
        raise CellsegError("choose an image layer to segment (add one to the viewer first)")
    if card is None or weights is None:
        raise CellsegError("choose a usable weight file first (see the Model box)")
    only_current = options.planes.value == "current"
    if channels is not None:  # the layer's channel axis, maybe a helper layer stacked
        model_channels = channels.channels(card)
        source = channels.image_input(viewer, only_current=only_current)
    else:
        model_channels = None
        source = _layers.image_input(image, viewer, only_current=only_current)
    one_z = "Z" in source.axes and "T" not in source.axes
    if one_z and options.link_time.value and not options.stitch_3d.value:
        source = replace(source, axes=source.axes.replace("Z", "T"))  # one leading axis: time
    params = options.predict_params(
        device=device, axes=source.axes, family=card.family, base=card.post_params(),
        diameter=diameter.params_value() if diameter is not None else None,
        channels=model_channels,
    )  # fmt: skip
    if "Z" in source.axes:  # kept, should Stitch 3D be ticked after the run
        params = replace(params, z_spacing=z_spacing(image, source.axes))
    name = _layers.result_name(image.name, card.name)
    return RunRequest(source, params, _layers.ResultTarget(image, name, source.plane, weights))
