"""pydata.format.atomic: temporary name + fsync + rename."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydata.format.atomic import atomic_write, fsync_directory, temp_name


def test_temp_names_are_hidden_unique_and_next_to_the_file(tmp_path: Path) -> None:
    a, b = temp_name(tmp_path / "index.json"), temp_name(tmp_path / "index.json")
    assert a != b
    assert a.parent == tmp_path
    assert a.name.startswith(".index.json.")
    assert a.name.endswith(".tmp")


def test_a_successful_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with atomic_write(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not visible before the rename
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(path) as f:
        f.write(b"partial")
        raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_fsync_directory_tolerates_what_cannot_be_opened(tmp_path: Path) -> None:
    fsync_directory(tmp_path)
    fsync_directory(tmp_path / "missing")
