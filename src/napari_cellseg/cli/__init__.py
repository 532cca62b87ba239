"""The ``cellseg`` command line: one module per sub-command, ``main`` in :mod:`.main`."""

from napari_cellseg.cli.app import main

__all__ = ["main"]
