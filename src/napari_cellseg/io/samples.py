"""The bundled sample images (DSB 2018, CC0) and their instance masks.

The files live in ``sample_data/`` at the repository root. The package reaches them through
the symlink ``napari_cellseg/_sample_data -> ../../sample_data``, which works in an editable
install; a built wheel stores the linked files as real files under the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_cellseg.errors import CellsegError

__all__ = ["SAMPLE_KINDS", "Sample", "get_sample", "list_samples", "sample_data_dir"]

SAMPLE_KINDS: tuple[str, ...] = ("fluorescence", "brightfield", "he")
"""Image kinds the samples cover: fluorescence, brightfield and H&E histology."""

# key (file stem in images/ and masks/), title, kind
_SAMPLES: tuple[tuple[str, str, str], ...] = (
    ("dsb_fluorescence", "Fluorescent nuclei (DSB 2018)", "fluorescence"),
    ("dsb_brightfield", "Brightfield cells with nuclei (DSB 2018)", "brightfield"),
    ("dsb_he", "H&E tissue nuclei (DSB 2018)", "he"),
)


@dataclass(frozen=True)
class Sample:
    """One sample image with its ground-truth instance mask.

    Attributes
    ----------
    key : str
        Identifier, the file stem (e.g. ``"dsb_fluorescence"``).
    title : str
        Human-readable name for menus.
    kind : str
        One of :data:`SAMPLE_KINDS`.
    image_path : pathlib.Path
        The image (RGBA PNG).
    mask_path : pathlib.Path
        The instance labels (uint16 TIFF, 0 = background).
    """

    key: str
    title: str
    kind: str
    image_path: Path
    mask_path: Path


def sample_data_dir() -> Path:
    """Return the folder holding the sample data.

    Returns
    -------
    pathlib.Path
        The resolved ``sample_data`` folder (with ``images/`` and ``masks/`` inside).

    Raises
    ------
    CellsegError
        If the folder is missing (e.g. a broken install).
    """
    folder = (Path(__file__).parent.parent / "_sample_data").resolve()
    if not (folder / "images").is_dir():
        raise CellsegError(
            f"{folder}: sample data folder not found; reinstall napari-cellseg "
            "(the sample images ship with the package)"
        )
    return folder


def list_samples() -> list[Sample]:
    """Return the bundled samples.

    Returns
    -------
    list of Sample
        One fluorescence, one brightfield and one H&E sample.

    Raises
    ------
    CellsegError
        If the sample folder or one of its files is missing.
    """
    folder = sample_data_dir()
    samples = []
    for key, title, kind in _SAMPLES:
        sample = Sample(
            key=key,
            title=title,
            kind=kind,
            image_path=folder / "images" / f"{key}.png",
            mask_path=folder / "masks" / f"{key}.tif",
        )
        for path in (sample.image_path, sample.mask_path):
            if not path.is_file():
                raise CellsegError(
                    f"{path}: sample file missing; reinstall napari-cellseg to restore it"
                )
        samples.append(sample)
    return samples


def get_sample(key: str) -> Sample:
    """Return one sample by key (``"dsb_he"``) or by kind (``"he"``).

    Parameters
    ----------
    key : str
        A sample key or one of :data:`SAMPLE_KINDS`.

    Returns
    -------
    Sample
        The matching sample.

    Raises
    ------
    CellsegError
        If no sample matches, or the sample data is missing.
    """
    samples = list_samples()
    for sample in samples:
        if key in (sample.key, sample.kind):
            return sample
    known = ", ".join(s.key for s in samples)
    raise CellsegError(f"unknown sample {key!r}; choose one of {known}")
