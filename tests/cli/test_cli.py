from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_cellseg.cli import main


def test_bad_file_is_one_line_and_exit_code_2(tmp_path, capsys) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("cellseg: error: ")
    assert "not a weight file" in err


def test_info_reports_every_bad_file_and_goes_on(tmp_path, capsys) -> None:
    from napari_cellseg.models import list_bundled_weights

    good = next(p for p in list_bundled_weights() if p.name == "unet_dsb.safetensors")
    missing = tmp_path / "missing.safetensors"
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    assert main(["info", str(missing), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(str(good))  # the good file is still described
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("cellseg: error: ") for e in errors)


def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "napari-cellseg" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    exe = shutil.which("cellseg") or str(Path(sys.executable).with_name("cellseg"))
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "info" in result.stdout
