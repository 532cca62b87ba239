"""The ranking of :mod:`.ranking` as a table and a CSV file (``cellseg rank``'s output).

One row per image (or per tile), most uncertain first, or with ``objects=True`` one row per
object or possible missed object, so that a user can open the list in a spreadsheet and go
through the worst objects of the worst images first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cellseg.batch.measure import write_table_csv
from napari_cellseg.batch.ranking import RankedImage
from napari_cellseg.inference.uncertainty import RankedObject

__all__ = ["ranking_table", "write_ranking_csv"]


def ranking_table(
    ranked: Sequence[RankedImage], *, objects: bool = False, root: Path | None = None
) -> dict[str, np.ndarray]:
    """The ranking as a column table: one row per image, or per object with ``objects``.

    Image columns: ``rank``, ``file`` (relative to ``root`` when given), ``score``,
    ``total_doubt``, ``reason``, ``n_objects``, ``uncertain_fraction``, ``worst_object``
    (its label; 0 for none or a possible missed object), ``diameter`` (px the objects were
    segmented at; empty when not rescaled for a size). With ``objects``: ``rank``, ``file``,
    ``image_score``, ``object_rank``, ``label``, ``plane``, ``score``, ``reason``,
    ``centroid_y``, ``centroid_x``, ``bbox_y0/x0/y1/x1``, ``area``. Ranked tiles add
    ``tile_y0/x0/y1/x1`` after ``file``.

    >>> o = RankedObject(2, 0, 0.6, "TTA copies disagree (IoU 0.40)", (1, 2, 5, 6), (3.0, 4.0), 16)
    >>> t = ranking_table([RankedImage(Path("/d/a.tif"), 0.4, "why", [o])], root=Path("/d"))
    >>> t["file"].tolist(), t["worst_object"].tolist()
    (['a.tif'], [2])
    >>> ranking_table([RankedImage(Path("a.tif"), 0.4, "why", [o])], objects=True)["bbox_x1"]
    array([6])
    """

    def name(path: Path) -> str:
        if root is not None:
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                pass
        return str(path)

    rows: list[dict[str, Any]] = []
    tiles = any(image.region is not None for image in ranked)
    for rank, image in enumerate(ranked, start=1):
        head = {"rank": rank, "file": name(image.path)}
        if tiles:
            corners = image.region or (0, 0, 0, 0)
            head.update(zip(("tile_y0", "tile_x0", "tile_y1", "tile_x1"), corners, strict=True))
        if not objects:
            worst = image.objects[0].label if image.objects else 0
            size = "" if image.diameter is None else f"{image.diameter:.1f}"
            rows.append({**head, "score": image.score, "total_doubt": image.total_doubt,
                         "reason": image.reason,
                         "n_objects": image.n_objects,
                         "uncertain_fraction": image.uncertain_fraction,
                         "worst_object": worst,
                         "diameter": size})  # fmt: skip
            continue
        for k, o in enumerate(image.objects, start=1):
            rows.append({**head, "image_score": image.score, "object_rank": k,
                         "label": o.label, "plane": o.plane, "score": o.score,
                         "reason": o.reason, "centroid_y": o.centroid[0],
                         "centroid_x": o.centroid[1], "bbox_y0": o.bbox[0],
                         "bbox_x0": o.bbox[1], "bbox_y1": o.bbox[2], "bbox_x1": o.bbox[3],
                         "area": o.area})  # fmt: skip
    if not rows:
        keys = ranking_table([RankedImage(Path("x"), 0, "", [_EMPTY])], objects=objects)
        return {k: np.array([]) for k in keys}
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


_EMPTY = RankedObject(0, 0, 0.0, "", (0, 0, 0, 0), (0.0, 0.0), 0)


def write_ranking_csv(
    path: str | os.PathLike[str],
    ranked: Sequence[RankedImage],
    *,
    objects: bool = False,
    root: Path | None = None,
) -> Path:
    """Write :func:`ranking_table` as CSV, atomically (its folder made); returns the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_table_csv(path, ranking_table(ranked, objects=objects, root=root))
