"""The demo weight files shipped in ``sample_data/models/``."""

from __future__ import annotations

from pathlib import Path


def list_bundled_weights() -> list[Path]:
    """Paths of the bundled demo weight files (empty when none are shipped)."""
    from napari_cellseg.core.errors import CellsegError

    try:
        from napari_cellseg.core.samples import sample_data_dir

        models = sample_data_dir() / "models"
    except (CellsegError, ImportError):
        return []
    return sorted(models.glob("*.safetensors")) if models.is_dir() else []
