"""napari glue for napari-cellseg: the only subpackage that imports napari, magicgui or qtpy."""
