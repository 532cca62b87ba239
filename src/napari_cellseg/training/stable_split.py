"""The validation split of a fine-tune that keeps the roles its base model gave the images.

The human-in-the-loop grows one training set: correct 3 images, fine-tune (model M1), correct
3 more, fine-tune M1 again. A fresh random split of the grown set
(:func:`~napari_cellseg.training.split.split_pairs`) can put into validation an image M1 was
trained on: M1 then scores well above its worth there, and the never-worse rule (an epoch
must beat the base on the validation images) hands M1 back even when the new model is the
better one. With the defaults (a validation share of 0.15) a set grown from 4 to 7 images
validates on one of M1's 3 training images in 3 of 7 splits.

Here the base's data manifest (kept in the fine-tune's card lineage, each entry with its
``role`` since session 25) decides first: an image the base was trained on stays in
training, an image it was validated on stays in validation, and only new images are drawn,
seeded, to fill the validation share. Images are matched by the SHA-256 of their files, so
renaming or moving them changes nothing. A base without roles (older cards, the bundled
models, images it never saw) leaves the split to ``split_pairs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_cellseg.training.manifest import file_sha256
from napari_cellseg.training.pairs import TrainingPair
from napari_cellseg.training.split import pair_order, split_pairs, split_rng, validation_count

__all__ = ["TRAIN", "VALIDATION", "earlier_roles", "kept_roles_notice", "split_after"]

TRAIN, VALIDATION = "train", "validation"
"""The ``role`` of a data-manifest entry."""


def earlier_roles(manifest: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{image sha256: role}`` of a base's data manifest (entries without a role left out).

    >>> earlier_roles([{"image_sha256": "ab", "role": "train"}, {"image_sha256": "cd"}])
    {'ab': 'train'}
    """
    return {
        str(e["image_sha256"]): str(e["role"])
        for e in manifest
        if isinstance(e, Mapping) and e.get("role") in (TRAIN, VALIDATION) and e.get("image_sha256")
    }


def split_after(
    pairs: Sequence[TrainingPair],
    val_fraction: float,
    seed: int,
    roles: Mapping[str, str],
    hashes: dict[Path, str] | None = None,
) -> tuple[list[TrainingPair], list[TrainingPair], int]:
    """Training and validation pairs that keep the base's ``roles`` (:func:`earlier_roles`).

    Parameters
    ----------
    pairs : sequence of TrainingPair
        The whole training set.
    val_fraction : float
        Share of the pairs for validation, as in ``split_pairs`` (at least one when there are
        two pairs or more and the share is above 0).
    seed : int
        Seed of the draw among the new pairs.
    roles : mapping
        ``{image sha256: "train" | "validation"}`` from the base model's card.
    hashes : dict, optional
        File digests by path, shared with the run's ``file_manifest``
        (:func:`~napari_cellseg.training.manifest.file_sha256`).

    Returns
    -------
    train, val : list of TrainingPair
        Sorted by name, as ``split_pairs`` returns them.
    kept : int
        How many pairs kept the base's role (0: ``split_pairs`` decided, as when no pair
        matched or none could validate without the base having trained on it).
    """
    if not roles or val_fraction <= 0 or len(pairs) < 2:
        train, val = split_pairs(pairs, val_fraction, seed)
        return train, val, 0
    ordered = sorted(pairs, key=pair_order)
    role = [roles.get(file_sha256(p.image_path, hashes)) for p in ordered]
    if not any(role):
        train, val = split_pairs(pairs, val_fraction, seed)
        return train, val, 0
    n = len(ordered)
    new = [i for i, r in enumerate(role) if r is None]
    chosen = {i for i, r in enumerate(role) if r == VALIDATION}
    need = max(0, validation_count(n, val_fraction) - len(chosen))
    chosen |= {new[k] for k in split_rng(seed).permutation(len(new))[:need].tolist()}
    if len(chosen) == n:  # never leave training empty: the last new pair trains
        chosen.discard(max(new) if new else max(chosen))
    if not chosen:  # nothing new and nothing the base validated on: as before
        train, val = split_pairs(pairs, val_fraction, seed)
        return train, val, 0
    train = [p for i, p in enumerate(ordered) if i not in chosen]
    val = [p for i, p in enumerate(ordered) if i in chosen]
    return train, val, sum(r is not None for r in role)


def kept_roles_notice(kept: int, n_val: int) -> str:
    """What a fine-tune says when :func:`split_after` kept the base's roles.

    >>> kept_roles_notice(4, 1)
    '4 images keep the roles the base model gave them: none it was trained on validates, so \
the comparison with it is fair (1 validation image)'
    """
    return (
        f"{kept} image{'s' * (kept != 1)} keep{'s' * (kept == 1)} the roles the base model "
        "gave them: none it was trained on validates, so the comparison with it is fair "
        f"({n_val} validation image{'s' * (n_val != 1)})"
    )
