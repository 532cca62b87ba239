"""The core, the models and the CLI never import napari, qtpy or magicgui."""

from __future__ import annotations

import subprocess
import sys

import pytest

GUI_MODULES = ("napari", "qtpy", "magicgui", "PyQt6", "PyQt5", "PySide6", "vispy")


@pytest.mark.parametrize(
    "modules",
    [
        "napari_cellseg",
        "napari_cellseg.errors, napari_cellseg.events, napari_cellseg.params, napari_cellseg.io, "
        "napari_cellseg.labels, napari_cellseg.inference, napari_cellseg.training, "
        "napari_cellseg.batch, napari_cellseg.cli",
        "napari_cellseg.io.images, napari_cellseg.io.samples, napari_cellseg.io.overlay, "
        "napari_cellseg.device, napari_cellseg.models, napari_cellseg.demo",
    ],
)
def test_core_imports_no_gui(modules: str) -> None:
    code = (
        f"import sys; import {modules}; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r}]; "
        "print(','.join(sorted(bad)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"{modules} pulled in GUI modules: {result.stdout}"


def test_package_import_is_light() -> None:
    code = "import sys, napari_cellseg; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_cli_info_runs_without_gui_in_a_subprocess(tmp_path) -> None:
    from napari_cellseg.models import ModelCard, build_model, save_weights

    args = {"encoder_name": "resnet18", "in_channels": 1, "classes": 3}
    path = save_weights(
        build_model("unet", **args), ModelCard.for_model("unet", args), tmp_path / "m.safetensors"
    )
    code = (
        "import sys\n"
        "from napari_cellseg.cli import main\n"
        f"rc = main(['info', {str(path)!r}])\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r}]\n"
        "print('GUI:', bad)\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "U-Net (resnet18)" in result.stdout
    assert "GUI: []" in result.stdout
