"""A small line plot drawn with QPainter: training loss and validation scores over epochs.

No plotting library: a few named series, a left axis (e.g. loss) and a right axis fixed to
[0, 1] (scores), a handful of tick labels, a legend, and dashed horizontal reference lines
(the base model's score). Repaints are throttled so a flood of updates costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from qtpy.QtCore import QPointF, QRectF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

MAX_POINTS = 600  # drawn per series; longer series are thinned evenly


@dataclass
class Series:
    """One named curve. ``axis`` is ``"left"`` (free range) or ``"right"`` ([0, 1])."""

    name: str
    color: str
    axis: str = "left"
    dashed: bool = False
    hline: bool = False  # draw ``ys[-1]`` as a horizontal line across the whole plot
    markers: bool = False
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> nice_ticks(0.0, 3.0)
    [0.0, 1.0, 2.0, 3.0]
    """
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _thin(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    stride = math.ceil(len(xs) / MAX_POINTS)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


class CurvePlot(QWidget):
    """Named series over a shared x axis (epochs), repainted at most ``max_fps`` times a second.

    Parameters
    ----------
    series : sequence of Series
        The curves, in legend order (their data may be empty at first).
    x_label, left_label, right_label : str
        Axis titles.
    max_fps : float
        Repaints per second at most; :meth:`set_series` calls in between are merged.
    """

    MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 46, 42, 10, 34

    def __init__(
        self,
        series: Sequence[Series],
        *,
        x_label: str = "epoch",
        left_label: str = "loss",
        right_label: str = "score",
        max_fps: float = 4.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.series: dict[str, Series] = {s.name: s for s in series}
        self.x_label, self.left_label, self.right_label = x_label, left_label, right_label
        self.min_interval = 1.0 / max_fps
        self.repaints = 0  # paint events handled (tests check the throttle)
        self._last_paint = -math.inf
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.update)
        self.setMinimumHeight(230)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding)

    # -- data -------------------------------------------------------------------------------
    def set_series(self, name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Replace the data of series ``name`` and schedule a (throttled) repaint."""
        if len(xs) != len(ys) and not self.series[name].hline:
            raise ValueError(f"{name}: {len(xs)} x values but {len(ys)} y values")
        self.series[name].xs = [float(x) for x in xs]
        self.series[name].ys = [float(y) for y in ys]
        self.schedule_repaint()

    def clear(self) -> None:
        """Empty every series."""
        for s in self.series.values():
            s.xs, s.ys = [], []
        self.schedule_repaint()

    def schedule_repaint(self) -> None:
        """Repaint now if the last paint is old enough, else once when it is."""
        if self._timer.isActive():
            return
        wait = max(0.0, self.min_interval - (time.monotonic() - self._last_paint))
        self._timer.start(int(wait * 1000))

    # -- ranges -----------------------------------------------------------------------------
    def _x_range(self) -> tuple[float, float]:
        xs = [x for s in self.series.values() if not s.hline for x in s.xs]
        hi = max(xs, default=1.0)
        return 0.0, max(1.0, float(math.ceil(hi)))

    def _right_range(self) -> tuple[float, float]:
        """Scores: [0, 1], zoomed to [0, 0.25] or [0, 0.5] while every score is that low."""
        ys = [
            y for s in self.series.values() if s.axis == "right" for y in s.ys if math.isfinite(y)
        ]
        hi = max(ys, default=1.0)
        return 0.0, next(top for top in (0.25, 0.5, 1.0) if hi <= top * 0.9 or top == 1.0)

    def _left_range(self) -> tuple[float, float]:
        ys = [y for s in self.series.values() if s.axis == "left" for y in s.ys if math.isfinite(y)]
        if not ys:
            return 0.0, 1.0
        hi = max(ys)
        return 0.0, hi * 1.1 if hi > 0 else 1.0

    # -- drawing ----------------------------------------------------------------------------
    def _legend_layout(self, fm) -> tuple[float, int, int]:
        """Width of one legend item, items per row, number of rows (legend under the axes)."""
        item = max(fm.horizontalAdvance(s.name) for s in self.series.values()) + 34
        per_row = max(1, int((self.width() - 8) // item))
        return item, per_row, math.ceil(len(self.series) / per_row)

    def paintEvent(self, event: QPaintEvent) -> None:
        self._last_paint = time.monotonic()
        self.repaints += 1
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        painter.fillRect(self.rect(), self.palette().base())
        fm = painter.fontMetrics()
        _, _, rows = self._legend_layout(fm)
        legend_height = rows * (fm.height() + 2) + 4
        plot = QRectF(
            self.MARGIN_LEFT,
            self.MARGIN_TOP,
            max(10, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT),
            max(10, self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM - legend_height),
        )
        x0, x1 = self._x_range()
        l0, l1 = self._left_range()
        r0, r1 = self._right_range()
        self._draw_axes(painter, plot, text, (x0, x1), (l0, l1), (r0, r1))
        painter.setClipRect(plot.adjusted(-4, -4, 4, 4))
        for s in self.series.values():
            y0, y1 = (l0, l1) if s.axis == "left" else (r0, r1)
            self._draw_series(painter, plot, s, (x0, x1), (y0, y1))
        painter.setClipping(False)
        self._draw_legend(painter, plot.bottom() + self.MARGIN_BOTTOM, text)
        painter.end()

    def _draw_axes(self, painter: QPainter, plot: QRectF, text: QColor, xr, lr, rr) -> None:
        grid = QColor(text)
        grid.setAlpha(40)
        fm = painter.fontMetrics()
        painter.setPen(QPen(text, 1))
        painter.drawRect(plot)
        for x in nice_ticks(*xr, count=5):
            px = plot.left() + (x - xr[0]) / (xr[1] - xr[0]) * plot.width()
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(px, plot.top()), QPointF(px, plot.bottom()))
            painter.setPen(text)
            label = _fmt(x)
            painter.drawText(
                QPointF(px - fm.horizontalAdvance(label) / 2, plot.bottom() + 14), label
            )
        for y in nice_ticks(*lr, count=4):
            py = plot.bottom() - (y - lr[0]) / (lr[1] - lr[0]) * plot.height()
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), py), QPointF(plot.right(), py))
            painter.setPen(text)
            label = _fmt(y)
            painter.drawText(QPointF(plot.left() - 4 - fm.horizontalAdvance(label), py + 4), label)
        for y in (rr[0], (rr[0] + rr[1]) / 2, rr[1]):
            py = plot.bottom() - (y - rr[0]) / (rr[1] - rr[0]) * plot.height()
            painter.drawText(QPointF(plot.right() + 4, py + 4), _fmt(y))
        base = plot.bottom() + 29
        painter.drawText(
            QPointF(plot.center().x() - fm.horizontalAdvance(self.x_label) / 2, base), self.x_label
        )
        painter.drawText(QPointF(2, base), self.left_label)
        right = self.right_label
        painter.drawText(QPointF(self.width() - 2 - fm.horizontalAdvance(right), base), right)

    def _draw_series(self, painter: QPainter, plot: QRectF, s: Series, xr, yr) -> None:
        if not s.ys:
            return
        pen = QPen(QColor(s.color), 2)
        if s.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)

        def to_px(x: float, y: float) -> QPointF:
            px = plot.left() + (x - xr[0]) / (xr[1] - xr[0]) * plot.width()
            frac = (min(max(y, yr[0]), yr[1]) - yr[0]) / (yr[1] - yr[0])
            return QPointF(px, plot.bottom() - frac * plot.height())

        if s.hline:
            y = s.ys[-1]
            if math.isfinite(y):
                painter.drawLine(to_px(xr[0], y), to_px(xr[1], y))
            return
        xs, ys = _thin(s.xs, s.ys)
        points = [to_px(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if len(points) > 1:
            path = QPainterPath(points[0])
            for p in points[1:]:
                path.lineTo(p)
            painter.drawPath(path)
        if s.markers or len(points) == 1:
            painter.setBrush(QColor(s.color))
            for p in points:
                painter.drawEllipse(p, 3, 3)
            painter.setBrush(Qt.BrushStyle.NoBrush)

    def _draw_legend(self, painter: QPainter, top: float, text: QColor) -> None:
        fm = painter.fontMetrics()
        item, per_row, _ = self._legend_layout(fm)
        faded = QColor(text)
        faded.setAlpha(110)
        for i, s in enumerate(self.series.values()):
            row, col = divmod(i, per_row)
            x = 4 + col * item
            y = top + row * (fm.height() + 2) + fm.ascent()
            pen = QPen(QColor(s.color), 2)
            if s.dashed:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            mid = y - fm.ascent() / 2 + 2
            painter.drawLine(QPointF(x, mid), QPointF(x + 22, mid))
            if s.markers:
                painter.setBrush(QColor(s.color))
                painter.drawEllipse(QPointF(x + 11, mid), 2.5, 2.5)
                painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(text if s.ys else faded)
            painter.drawText(QPointF(x + 27, y), s.name)
