"""``python -m napari_cellseg._launch`` without a display: no napari, a clear line, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

NO_DISPLAY_LINE = "No display found"


def _env_without_display() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_launch_without_display_exits_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "napari_cellseg._launch"],
        cwd=tmp_path,
        env=_env_without_display(),
        capture_output=True,
        text=True,
        timeout=600,  # the headless demo runs a small model on the CPU
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert NO_DISPLAY_LINE in proc.stdout
    # the repository ships the demo weights and samples, so the demo must run, not excuse itself
    assert "Demo done" in proc.stdout, proc.stdout
    out = tmp_path / "demo-output"
    assert any(out.glob("*_labels.tif")), sorted(p.name for p in out.iterdir())


def test_headless_branch_never_imports_gui(tmp_path: Path) -> None:
    """With the demo replaced by a stub, main() returns 0 and loads no napari/Qt/magicgui."""
    script = textwrap.dedent(
        """
        import sys, types
        calls = []
        demo = types.ModuleType("napari_cellseg.demo")
        demo.run_headless_demo = lambda out_dir: calls.append(out_dir) or {"out_dir": str(out_dir)}
        sys.modules["napari_cellseg.demo"] = demo
        from napari_cellseg._launch import main
        assert main([]) == 0
        assert [str(p) for p in calls] == ["demo-output"], calls
        gui = [m for m in ("napari", "qtpy", "magicgui", "PyQt6") if m in sys.modules]
        assert not gui, gui
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_env_without_display(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert NO_DISPLAY_LINE in proc.stdout
    assert f"Demo done: results in {tmp_path.resolve() / 'demo-output'}/" in proc.stdout


def test_screenshot_without_display_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "napari_cellseg._launch", "--screenshot", "shot.png"],
        cwd=tmp_path,
        env=_env_without_display(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert NO_DISPLAY_LINE in proc.stderr
    assert not (tmp_path / "shot.png").exists()
