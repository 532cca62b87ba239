"""``python -m napari_cellseg.cli``: the same as the ``cellseg`` command."""

from napari_cellseg.cli.app import main

raise SystemExit(main())
