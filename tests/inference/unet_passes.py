"""Counting the U-Net's network passes in a test (shared by the grouping tests)."""

from __future__ import annotations

from napari_cellseg.inference.model_runner import ModelRunner

UNET_PASS = ModelRunner._unet_pass  # the network pass itself, before any test wraps it


def record_passes(monkeypatch) -> list[int]:
    """Record the number of tiles of every network pass (a fresh list on each call)."""
    sizes: list[int] = []

    def counted(self, batch, transform):
        sizes.append(len(batch))
        return UNET_PASS(self, batch, transform)

    monkeypatch.setattr(ModelRunner, "_unet_pass", counted)
    return sizes
