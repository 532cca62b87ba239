"""Per-object uncertainty signals from copies' labels and probabilities (pure numpy).

The formulas are those of :mod:`napari_cellseg.inference.uncertainty` (which runs the
copies); here they are computed from arrays already on the image's grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["TOP_K", "RankedObject", "disagreement", "image_score", "score_objects"]

#: The image score averages this many of its most uncertain objects.
TOP_K = 5
#: Objects at or above this uncertainty are called doubtful in the image's reason.
DOUBTFUL = 0.5
#: An object whose every signal stays below this is reported as not doubtful.
CLEAR = 0.1
#: Width in pixels of the background ring whose probability the boundary margin reads.
RING = 2


@dataclass(frozen=True)
class RankedObject:
    """One object and how unsure the model is about it.

    Attributes
    ----------
    label : int
        Its id in the reference labels.
    plane : int
        Its plane (0 for a 2-D image; the index over the T/Z axes otherwise).
    score : float
        Uncertainty in [0, 1] (1: most doubtful): the largest of ``signals``.
    reason : str
        Why, in words, e.g. ``"TTA copies disagree (IoU 0.41)"``.
    bbox : tuple of int
        ``(y0, x0, y1, x1)`` in its plane (end exclusive).
    centroid : tuple of float
        ``(y, x)`` in its plane.
    area : int
        Pixels.
    signals : dict of str to float
        ``tta``, and ``boundary`` / ``detection`` where the model gives them.
    """

    label: int
    plane: int
    score: float
    reason: str
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    area: int
    signals: dict[str, float] = field(default_factory=dict)


def _iou_best(mask: np.ndarray, window: np.ndarray, areas: np.ndarray) -> float:
    """The best IoU of ``mask`` with an object of ``window`` (labels over the same pixels)."""
    inter = np.bincount(window[mask].ravel(), minlength=len(areas))[: len(areas)]
    inter[0] = 0
    if not inter.any():
        return 0.0
    union = int(mask.sum()) + areas - inter
    return float(np.max(inter / np.maximum(union, 1)))


def _margin(prob: np.ndarray, inside: np.ndarray, ring: np.ndarray, threshold: float) -> float:
    """How clearly ``prob`` separates an object from its background ring, in [0, 1].

    >>> p = np.array([[0.0, 1.0, 1.0, 0.0]])
    >>> inside, ring = p > 0.5, p < 0.5
    >>> _margin(p, inside, ring, 0.5), _margin(np.full((1, 4), 0.5), inside, ring, 0.5)
    (1.0, 0.0)
    """
    parts = [np.clip((prob[inside].mean() - threshold) / max(1.0 - threshold, 1e-6), 0, 1)]
    if ring.any():
        parts.append(np.clip((threshold - prob[ring].mean()) / max(threshold, 1e-6), 0, 1))
    return float(np.mean(parts))


def score_objects(
    reference: np.ndarray,
    copies: Sequence[np.ndarray],
    *,
    foreground: np.ndarray | None = None,
    threshold: float = 0.5,
    scores: Mapping[int, float] | None = None,
    plane: int = 0,
) -> list[RankedObject]:
    """The uncertainty of each object of one plane, most uncertain first.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(Y, X)`` labels whose objects are scored.
    copies : sequence of numpy.ndarray
        ``(Y, X)`` labels of the other copies, on the same grid.
    foreground : numpy.ndarray, optional
        ``(Y, X)`` foreground probability (mean of the copies), for the boundary signal.
    threshold : float
        The probability above which a pixel is foreground.
    scores : mapping of int to float, optional
        Detection score of each reference label, for the detection signal.
    plane : int
        Recorded in each object.

    Returns
    -------
    list of RankedObject

    Examples
    --------
    >>> ref = np.zeros((8, 12), np.int32); ref[1:5, 1:5] = 1; ref[1:5, 7:11] = 2
    >>> other = ref.copy(); other[1:5, 9:11] = 0          # a copy sees half of object 2
    >>> [(o.label, round(o.score, 2), o.reason) for o in score_objects(ref, [other])]
    [(2, 0.5, 'TTA copies disagree (IoU 0.50)'), (1, 0.0, 'no doubt: copies agree')]
    >>> score_objects(ref, [ref], scores={1: 0.32, 2: 0.9})[0].reason
    'low detection score 0.32'
    """
    reference = np.asarray(reference)
    areas = [np.bincount(np.asarray(c).ravel()) for c in copies]
    found: list[RankedObject] = []
    for index, box in enumerate(ndi.find_objects(reference)):
        if box is None:
            continue
        label = index + 1
        ys, xs = box
        y0, x0 = max(ys.start - RING, 0), max(xs.start - RING, 0)
        y1, x1 = min(ys.stop + RING, reference.shape[0]), min(xs.stop + RING, reference.shape[1])
        window = reference[y0:y1, x0:x1]
        mask = window == label
        signals: dict[str, float] = {}
        reasons: dict[str, str] = {}
        if copies:
            pairs = zip(copies, areas, strict=True)
            iou = float(np.mean([_iou_best(mask, c[y0:y1, x0:x1], a) for c, a in pairs]))
            signals["tta"] = 1.0 - iou
            reasons["tta"] = f"TTA copies disagree (IoU {iou:.2f})"
        if foreground is not None:
            inside = ndi.binary_erosion(mask)
            inside = inside if inside.any() else mask
            ring = ndi.binary_dilation(mask, iterations=RING) & (window == 0)
            margin = _margin(foreground[y0:y1, x0:x1], inside, ring, threshold)
            signals["boundary"] = 1.0 - margin
            reasons["boundary"] = f"weak boundary (margin {margin:.2f})"
        if scores is not None and label in scores:
            signals["detection"] = 1.0 - float(scores[label])
            reasons["detection"] = f"low detection score {float(scores[label]):.2f}"
        worst = max(signals, key=signals.get) if signals else ""
        if signals.get(worst, 0.0) < CLEAR:
            reasons[worst] = _clear(signals, scores.get(label) if scores else None)
        yy, xx = np.nonzero(mask)
        found.append(
            RankedObject(
                label=label,
                plane=plane,
                score=round(float(np.clip(signals.get(worst, 0.0), 0.0, 1.0)), 4),
                reason=reasons.get(worst, "no signal"),
                bbox=(ys.start, xs.start, ys.stop, xs.stop),
                centroid=(float(yy.mean() + y0), float(xx.mean() + x0)),
                area=int(mask.sum()),
                signals=signals,
            )
        )
    found.sort(key=lambda o: (-o.score, o.plane, o.label))
    return found


def _clear(signals: dict[str, float], score: float | None) -> str:
    """The reason of an object no signal doubts.

    >>> _clear({"tta": 0.0, "boundary": 0.02}, None), _clear({"detection": 0.01}, 0.99)
    ('no doubt: copies agree, clear boundary', 'no doubt: score 0.99')
    """
    parts = {"tta": "copies agree", "boundary": "clear boundary"}
    said = [parts[k] for k in signals if k in parts]
    if score is not None:
        said.append(f"score {score:.2f}")
    return "no doubt: " + ", ".join(said)


def disagreement(copies: Sequence[np.ndarray]) -> float:
    """The part of the foreground (any copy) on which the copies' labels disagree.

    >>> a = np.array([[1, 1, 0, 0]]); b = np.array([[1, 0, 0, 2]])
    >>> disagreement([a, b]), disagreement([a, a]), disagreement([a * 0])
    (0.6666666666666666, 0.0, 0.0)
    """
    fg = np.stack([np.asarray(c) > 0 for c in copies])
    union = fg.any(axis=0)
    n = int(union.sum())
    return float((union & ~fg.all(axis=0)).sum()) / n if n else 0.0


def image_score(
    objects: Sequence[RankedObject], fraction: float, top_k: int = TOP_K
) -> tuple[float, str]:
    """The image's uncertainty and its reason, from its objects (most uncertain first).

    ``0.5 * mean(top_k largest object scores) + 0.5 * fraction``.

    >>> image_score([], 0.0)
    (0.0, 'no objects found')
    >>> o = RankedObject(3, 0, 0.8, "weak boundary (margin 0.20)", (0, 0, 2, 2), (1.0, 1.0), 4)
    >>> image_score([o], 0.1)
    (0.45, '1 doubtful object; worst: weak boundary (margin 0.20)')
    >>> image_score([o], 0.9)[1]
    'TTA copies disagree on 90% of the foreground'
    """
    top = float(np.mean([o.score for o in objects[:top_k]])) if objects else 0.0
    score = round(0.5 * top + 0.5 * float(fraction), 4)
    if not objects and fraction == 0:
        return score, "no objects found"
    if fraction > top or not objects:
        return score, f"TTA copies disagree on {fraction:.0%} of the foreground"
    if all(o.label == 0 for o in objects):  # only candidates the model did not keep
        return score, f"no objects kept; {len(objects)} possible missed ({objects[0].reason})"
    doubtful = sum(o.score >= DOUBTFUL for o in objects)
    if doubtful == 0:
        return score, f"no doubtful object (worst {objects[0].score:.2f})"
    plural = "s" if doubtful > 1 else ""
    return score, f"{doubtful} doubtful object{plural}; worst: {objects[0].reason}"
