"""A training set's data manifest: each pair's file names and SHA-256 digests, for the card.

The manifest goes into the model card's provenance (:mod:`~napari_cellseg.training.provenance`)
and, through a fine-tune's lineage, into every descendant's, so a model always says which
files it learned from; matching by digest lets a later fine-tune keep each image's role
(:mod:`~napari_cellseg.training.stable_split`) however the files were renamed or moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from napari_cellseg.io.files import sha256_path
from napari_cellseg.training.pairs import TrainingPair

__all__ = ["file_manifest", "file_sha256"]


def file_manifest(
    pairs: Sequence[TrainingPair],
    role: str | None = None,
    hashes: dict[Path, str] | None = None,
) -> list[dict[str, str]]:
    """Names and SHA-256 hashes of the files of a training set (for the model card).

    Parameters
    ----------
    pairs : sequence of TrainingPair
        The pairs, in the order wanted.
    role : str, optional
        ``"train"`` or ``"validation"``: kept in each entry, so that a later fine-tune of the
        model keeps each image's role (:mod:`~napari_cellseg.training.stable_split`).
    hashes : dict, optional
        File digests already computed, by path (:func:`file_sha256`); those computed here are
        added to it.

    Returns
    -------
    list of dict
        One dict per pair with ``name``, ``dataset``, ``image`` and ``mask`` (file names) and
        ``image_sha256``, ``mask_sha256`` (hex digests of the file contents); with a region
        mask also ``region`` and ``region_sha256``; with ``role``, ``role``.
    """
    out = []
    for p in pairs:
        entry = {
            **({"role": role} if role else {}),
            "name": p.name,
            "dataset": p.dataset,
            "image": p.image_path.name,
            "mask": p.mask_path.name,
            "image_sha256": file_sha256(p.image_path, hashes),
            "mask_sha256": file_sha256(p.mask_path, hashes),
        }
        if p.region_path is not None:
            entry["region"] = p.region_path.name
            entry["region_sha256"] = file_sha256(p.region_path, hashes)
        out.append(entry)
    return out


def file_sha256(path: Path, hashes: dict[Path, str] | None = None) -> str:
    """``sha256_path(path)``, read from ``hashes`` when there, and kept there, so a training
    run reads each file once for the split and the manifest."""
    if hashes is None:
        return sha256_path(path)
    if path not in hashes:
        hashes[path] = sha256_path(path)
    return hashes[path]
