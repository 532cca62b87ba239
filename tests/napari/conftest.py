"""Every dock test keeps the widgets' user settings in its own temporary folder, never in the
user's config directory (a test that needs another folder sets the variable again)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the widgets keep their settings and autosaves in during this test."""
    path = tmp_path / "config"
    monkeypatch.setenv("NAPARI_CELLSEG_CONFIG_DIR", str(path))
    return path
