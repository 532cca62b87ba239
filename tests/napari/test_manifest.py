"""The npe2 manifest: valid, installed from the repo's napari.yaml, every python_name imports."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "napari-cellseg"


@pytest.fixture(scope="module")
def manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_distribution(PLUGIN)


def test_npe2_validate_passes() -> None:
    npe2_cli = Path(sys.executable).with_name("npe2")
    cmd = [str(npe2_cli)] if npe2_cli.exists() else [sys.executable, "-m", "npe2"]
    proc = subprocess.run(
        [*cmd, "validate", PLUGIN], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_entry_point_is_the_repo_manifest() -> None:
    (entry,) = [
        ep for ep in importlib.metadata.entry_points(group="napari.manifest") if ep.name == PLUGIN
    ]
    package, _, filename = entry.value.partition(":")
    installed = importlib.resources.files(package) / filename
    assert Path(str(installed)).samefile(REPO_ROOT / "napari.yaml")


def test_names(manifest: npe2.PluginManifest) -> None:
    assert manifest.name == PLUGIN
    assert manifest.display_name == "Cell Segmentation"
    commands = manifest.contributions.commands or []
    assert commands
    assert all(cmd.id.startswith(f"{PLUGIN}.") for cmd in commands)


def test_every_python_name_imports(manifest: npe2.PluginManifest) -> None:
    commands = manifest.contributions.commands or []
    for cmd in commands:
        assert cmd.python_name, cmd.id
        module_name, _, attr = cmd.python_name.partition(":")
        assert module_name.startswith("napari_cellseg._napari"), cmd.python_name
        obj = getattr(importlib.import_module(module_name), attr)
        assert callable(obj), cmd.python_name


def test_contributions_point_at_declared_commands(manifest: npe2.PluginManifest) -> None:
    ids = {cmd.id for cmd in manifest.contributions.commands or []}
    widgets = manifest.contributions.widgets or []
    assert [w.display_name for w in widgets] == [
        "Cell segmentation",
        "Segment",
        "Correct",
        "Fine-tune",
        "Evaluate",
        "Measure",
        "Batch segment folder…",
    ]
    samples = manifest.contributions.sample_data or []
    for contribution in [*widgets, *samples]:
        assert contribution.command in ids


def test_sample_data_keys_match_core_samples(manifest: npe2.PluginManifest) -> None:
    samples_mod = pytest.importorskip("napari_cellseg.io.samples")
    declared = {s.key for s in manifest.contributions.sample_data or []}
    assert declared == {s.key for s in samples_mod.list_samples()}
