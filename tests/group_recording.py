"""Recording the groups of images that go through the network together (the grouping tests)."""

from __future__ import annotations

from napari_cellseg.inference import image_groups

ITER_PREDICT_IMAGES = image_groups.iter_predict_images  # before any test wraps it


def record_groups(
    monkeypatch, where: str = "napari_cellseg.inference.image_groups.iter_predict_images"
) -> list[int]:
    """Wrap ``iter_predict_images`` at ``where`` (the name a caller looks up) to record the
    size of every group it runs; returns the list it fills."""
    sizes: list[int] = []

    def recorded(images, *args, **kwargs):
        sizes.append(len(images))
        return (yield from ITER_PREDICT_IMAGES(images, *args, **kwargs))

    monkeypatch.setattr(where, recorded)
    return sizes
