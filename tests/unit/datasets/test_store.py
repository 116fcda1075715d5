"""Which store a URL gets (open_store), without any network: botocore for s3:// when it can honour
every storage option, fsspec otherwise or when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydata.datasets.store import FsspecStore, S3Store, open_store, unmapped_s3_options

pytest.importorskip("botocore")

OPTIONS = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"},
           "config_kwargs": {"connect_timeout": 1}, "default_block_size": 1 << 20}


def test_s3_goes_through_botocore_when_every_option_maps() -> None:
    store, path = open_store("s3://bucket/some/ds/", OPTIONS)
    assert isinstance(store, S3Store)
    assert path == "bucket/some/ds"
    assert store.options == OPTIONS


def test_an_option_botocore_cannot_honour_keeps_s3fs() -> None:
    pytest.importorskip("s3fs")
    options = {**OPTIONS, "version_aware": True}
    assert unmapped_s3_options(options) == ["version_aware"]
    store, path = open_store("s3://bucket/ds", options)
    assert isinstance(store, FsspecStore)
    assert path == "bucket/ds"


def test_botocore_asked_for_names_the_options_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match=r"\['session_kwargs', 'version_aware'\].*s3_client='fsspec'"):
        open_store("s3://bucket/ds", {"version_aware": True, "session_kwargs": {}}, s3_client="botocore")


def test_fsspec_can_be_asked_for() -> None:
    pytest.importorskip("s3fs")
    store, _ = open_store("s3://bucket/ds", OPTIONS, s3_client="fsspec")
    assert isinstance(store, FsspecStore)


def test_other_protocols_use_fsspec(tmp_path: Path) -> None:
    store, path = open_store(f"file://{tmp_path}", s3_client="botocore")
    assert isinstance(store, FsspecStore)
    (tmp_path / "f").write_bytes(b"0123456789")
    assert store.read(f"{path}/f", 2, 5) == b"234"
    assert store.read(f"{path}/f") == b"0123456789"


def test_a_bad_choice_is_named() -> None:
    with pytest.raises(ValueError, match="s3_client must be .*'boto'"):
        open_store("s3://bucket/ds", s3_client="boto")  # type: ignore[arg-type]
