"""The package as a whole: manifest, entry points, import hygiene, the CLI shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: napari-facing modules allowed to import napari / Qt
GUI_MODULES = ("napari_hrs._widgets", "napari_hrs._napari.demo")


def core_modules() -> list[str]:
    """Every module of the package except the GUI ones (found on disk, so new ones count)."""
    import pkgutil

    import napari_hrs

    names = ["napari_hrs"]
    for info in pkgutil.walk_packages(napari_hrs.__path__, "napari_hrs."):
        if not info.name.startswith(GUI_MODULES) and not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def test_npe2_validate():
    """The manifest is valid and every command's python_name resolves."""
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-hrs")
    assert manifest.name == "napari-hrs"
    assert manifest.contributions.readers
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-hrs", "--imports"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_without_qt_or_napari():
    """The core never imports Qt or napari (a fresh interpreter with both blocked)."""
    code = f"""
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('napari', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'vispy'):
            raise ImportError('blocked in this test: ' + name)
        return None
sys.meta_path.insert(0, Block())
for mod in {core_modules()!r}:
    importlib.import_module(mod)
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_top_level_import_is_light():
    """``import napari_hrs`` pulls in neither torch nor napari (napari startup stays fast)."""
    code = "import sys, napari_hrs; print(sorted(m for m in ('torch', 'napari', 'dask') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_manifest_is_shipped_in_package():
    import napari_hrs

    assert (Path(napari_hrs.__file__).parent / "napari.yaml").is_file()


def test_cli_help_lists_subcommands():
    result = subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    import pkgutil

    import napari_hrs.cli

    built = [m.name for m in pkgutil.iter_modules(napari_hrs.cli.__path__) if m.name != "__main__"]
    assert built, "no subcommand modules"
    for name in built:
        assert name in napari_hrs.cli.SUBCOMMANDS, f"cli/{name}.py is not listed in SUBCOMMANDS"
        assert name in result.stdout


def test_cli_without_command_prints_help_and_fails():
    result = subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("flag", ["--version"])
def test_cli_version(flag):
    import napari_hrs

    result = subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli", flag], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert napari_hrs.__version__ in result.stdout


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, None),
        ("brightfield=0,PRM1=2,PNA=1", {"brightfield": 0, "PRM1": 2, "PNA": 1}),
        ("PNA=AF488, brightfield=BF", {"PNA": "AF488", "brightfield": "BF"}),
    ],
)
def test_parse_channels(text, expected):
    from napari_hrs.cli import parse_channels

    assert parse_channels(text) == expected


@pytest.mark.parametrize("text", ["brightfield", "=0", "PRM1="])
def test_parse_channels_rejects_malformed(text):
    from napari_hrs.cli import CLIError, parse_channels

    with pytest.raises(CLIError, match="ROLE=INDEX"):
        parse_channels(text)
