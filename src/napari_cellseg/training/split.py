"""A training set's random validation split: reproducible whatever order the pairs come in.

:func:`split_pairs` sorts the pairs by name, then draws the validation share with a seeded
generator, so the same seed gives the same split on every machine. A fine-tune that keeps the
roles its base model gave the images builds on these pieces
(:mod:`~napari_cellseg.training.stable_split`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_cellseg.errors import CellsegError
from napari_cellseg.training.pairs import TrainingPair

__all__ = ["pair_order", "split_pairs", "split_rng", "validation_count"]


def pair_order(pair: TrainingPair) -> tuple[str, str, str]:
    """The sort key of the splits: name, dataset, image path."""
    return pair.name, pair.dataset, str(pair.image_path)


def validation_count(n: int, val_fraction: float) -> int:
    """How many of ``n`` pairs validate: at least one when there are two or more and the
    share is above 0, and never all of them.

    >>> [validation_count(n, 0.15) for n in (1, 2, 7, 20)], validation_count(5, 0.0)
    ([0, 1, 1, 3], 0)
    """
    return min(max(round(n * val_fraction), 1), n - 1) if val_fraction > 0 and n >= 2 else 0


def split_rng(seed: int) -> np.random.Generator:
    """The random generator of the validation splits."""
    return np.random.default_rng(np.random.SeedSequence(int(seed) % 2**64))


def split_pairs(
    pairs: Sequence[TrainingPair], val_fraction: float, seed: int
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Split pairs into training and validation sets, reproducibly.

    The pairs are sorted by name first, so the same seed gives the same split whatever the
    input order. With ``val_fraction > 0`` and at least two pairs, validation gets at least
    one and training keeps at least one.

    Parameters
    ----------
    pairs : sequence of TrainingPair
        All pairs.
    val_fraction : float
        Fraction for validation, in [0, 1).
    seed : int
        Random seed of the split.

    Returns
    -------
    train, val : list of TrainingPair
        Both sorted by name.

    Examples
    --------
    >>> from pathlib import Path
    >>> ps = [TrainingPair(Path(f"{n}.png"), Path(f"{n}.tif"), "d", n) for n in "abcdef"]
    >>> train, val = split_pairs(ps, 0.3, seed=0)
    >>> len(train), len(val), split_pairs(ps[::-1], 0.3, seed=0) == (train, val)
    (4, 2, True)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CellsegError(f"validation fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(pairs, key=pair_order)
    n = len(ordered)
    chosen = set(split_rng(seed).permutation(n)[: validation_count(n, val_fraction)].tolist())
    train = [p for i, p in enumerate(ordered) if i not in chosen]
    val = [p for i, p in enumerate(ordered) if i in chosen]
    return train, val
