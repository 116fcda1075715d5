"""The error hierarchy: every class is a PydataError and the builtin it describes, and the
core's C++ errors arrive as these classes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pydata
from pydata import errors

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.FormatError, ValueError),
        (errors.CorruptDataError, ValueError),
        (errors.ClosedError, RuntimeError),
        (errors.WaitTimeoutError, TimeoutError),
        (errors.AuditError, RuntimeError),
        (errors.RemoteError, OSError),
    ],
)
def test_each_error_is_both_pydata_and_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, errors.PydataError)
    assert issubclass(cls, builtin)
    assert getattr(pydata, cls.__name__) is cls


def test_errors_module_imports_nothing_from_pydata() -> None:
    # The compiled core imports pydata.errors during its own initialisation.
    tree = ast.parse((REPO / "pydata" / "errors.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("pydata"), ast.dump(node)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("pydata") for a in node.names), ast.dump(node)


def test_core_errors_translate_to_python_classes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(errors.CorruptDataError):  # C++ CorruptDataError
        pydata.MappedFile(empty)
    with pytest.raises(FileNotFoundError):  # C++ OsError(ENOENT) -> OSError subclass
        pydata.MappedFile(tmp_path / "missing.bin")
    with pytest.raises(IndexError):  # std::out_of_range
        pydata.MappedFile(__file__).view(0, 10**9)
    ring = pydata.RingBuffer(2)
    ring.close()
    with pytest.raises(errors.ClosedError):  # C++ ClosedError
        ring.push(1)
    with pytest.raises(errors.WaitTimeoutError):  # C++ WaitTimeout
        pydata.RingBuffer(2).pop(timeout=0.001)
