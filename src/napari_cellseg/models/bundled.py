"""The demo weight files shipped in ``sample_data/models/``."""

from __future__ import annotations

from pathlib import Path


def list_bundled_weights() -> list[Path]:
    """Paths of the bundled demo weight files, best validation DSB AP first (empty if none)."""
    from napari_cellseg.errors import CellsegError

    try:
        from napari_cellseg.io.samples import sample_data_dir

        models = sample_data_dir() / "models"
    except (CellsegError, ImportError):
        return []
    if not models.is_dir():
        return []
    return sorted(models.glob("*.safetensors"), key=lambda p: (-_dsb_ap(p), p.name))


def _dsb_ap(path: Path) -> float:
    from napari_cellseg.errors import CellsegError
    from napari_cellseg.models.weights import read_card

    try:
        return float(read_card(path).provenance.get("metrics", {}).get("dsb_ap", 0.0))
    except (CellsegError, TypeError, ValueError):
        return 0.0
