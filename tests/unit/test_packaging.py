"""The installed package is what a user gets: the extension next to its stub and py.typed,
models shipped as pydata.models, and a light import."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pydata
from pydata import _core


def test_extension_sits_in_the_package_with_stub_and_marker() -> None:
    package_dir = Path(pydata.__file__).parent
    assert Path(_core.__file__).parent == package_dir
    assert (package_dir / "_core.pyi").is_file()
    assert (package_dir / "py.typed").is_file()


def test_models_ship_inside_pydata_only() -> None:
    import pydata.models

    assert Path(pydata.models.__file__).resolve().parent.parent == Path(pydata.__file__).resolve().parent
    site_packages = Path(pydata.__file__).resolve().parent.parent
    assert not (site_packages / "models").exists(), "a top-level 'models' package was installed"


def test_import_pydata_does_not_import_heavy_dependencies() -> None:
    code = "import sys, pydata; print(sorted(m for m in ('torch', 's3fs', 'nvidia.dali') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_public_names_are_sorted_and_exist() -> None:
    assert pydata.__all__ == sorted(pydata.__all__)
    for name in pydata.__all__:
        assert hasattr(pydata, name), name


def test_cli_entry_point_is_installed() -> None:
    script = Path(sys.executable).parent / "pydata"
    assert script.is_file()
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == pydata.__version__
    assert importlib.util.find_spec("pydata.cli") is not None
