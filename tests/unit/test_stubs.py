"""The committed pydata/_core.pyi is exactly what pybind11-stubgen generates from the built
extension (never hand-edited), and it is the stub that ships."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pydata

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "make stubs   (runs pybind11-stubgen pydata._core against the installed package)"


def test_committed_stub_matches_the_extension(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "pydata._core", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=tmp_path,  # never the repo root: the source tree must not shadow the installed package
    )
    generated = (tmp_path / "pydata" / "_core.pyi").read_text()
    committed = (REPO / "pydata" / "_core.pyi").read_text()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "committed pydata/_core.pyi",
            "generated",
        )
    )
    assert not diff, f"pydata/_core.pyi is stale; regenerate with: {REGENERATE}\n{diff}"


def test_installed_stub_is_the_committed_one() -> None:
    installed = Path(pydata.__file__).resolve().parent / "_core.pyi"
    assert installed.read_text() == (REPO / "pydata" / "_core.pyi").read_text()
