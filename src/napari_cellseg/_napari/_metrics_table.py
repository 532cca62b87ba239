"""A read-only metrics table (one row per metric, one column per model) and its CSV text."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path

from magicgui.widgets import Table
from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

from napari_cellseg.errors import CellsegError
from napari_cellseg.io.atomic import atomic_write_text
from napari_cellseg.labels.metrics import METRIC_KEYS

METRIC_ROWS: tuple[str, ...] = (*METRIC_KEYS, "n_images")
ROW_HEIGHT = 21  # pixels per metric row
TABLE_HEIGHT = 10 * ROW_HEIGHT + 14  # the header and nine rows, no scroll bar


def format_metric(key: str, value: object) -> str:
    """A cell's text: 3 decimals (Hausdorff 1), counts as integers, missing as an en dash."""
    if value is None:
        return "–"
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return "–"
    if key == "n_images":
        return str(int(number))
    return f"{number:.1f}" if key == "glas_object_hausdorff" else f"{number:.3f}"


def make_metrics_table(name: str, label: str = "Metrics") -> Table:
    """An empty read-only table with the metric rows."""
    table = Table(name=name, label=label)
    table.read_only = True
    table.native.setItemDelegate(QStyledItemDelegate(table.native))  # show our own text
    table.native.verticalHeader().setMinimumSectionSize(ROW_HEIGHT)
    table.native.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
    table.native.setMinimumHeight(TABLE_HEIGHT)
    table.native.setMaximumHeight(TABLE_HEIGHT)
    fill_metrics_table(table, {})
    return table


def fill_metrics_table(table: Table, columns: Mapping[str, Mapping[str, object]]) -> None:
    """Show ``columns`` (column title -> metrics dict) side by side, one metric per row."""
    titles = list(columns) or ["–"]
    data = [
        [
            format_metric(key, columns[title].get(key)) if title in columns else ""
            for title in titles
        ]
        for key in METRIC_ROWS
    ]
    table.value = {"data": data, "index": list(METRIC_ROWS), "columns": titles}
    header = table.native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.native.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)


def metrics_csv(columns: Mapping[str, Mapping[str, object]]) -> str:
    """CSV text with a ``metric`` column, then one column per model (full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", *columns])
    for key in METRIC_ROWS:
        row = [columns[title].get(key, "") for title in columns]
        writer.writerow([key, *("" if v is None else v for v in row)])
    return buffer.getvalue()


def write_metrics_csv(columns: Mapping[str, Mapping[str, object]], path: object) -> Path:
    """Write the table to ``path`` (``.csv`` added if missing) atomically; the path written.

    Raises
    ------
    CellsegError
        Nothing to write, no file chosen, or the file cannot be written (says which).
    """
    if not columns:
        raise CellsegError("nothing to export yet: evaluate or compare first")
    if path is None or str(path) in ("", "."):
        raise CellsegError("choose a CSV file to export to")
    path = Path(str(path))
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, metrics_csv(columns))
    except (OSError, CellsegError) as exc:
        raise CellsegError(f"{path}: could not write the table ({exc})") from None
    return path
