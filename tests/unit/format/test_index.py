"""pydata.format.index: the index.json keys and types, and one test per parse error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pydata
from pydata import Field, FormatError, read_index
from pydata.format import FORMAT_NAME, FORMAT_VERSION, INDEX_NAME, DatasetIndex, ShardEntry

SOURCE = "/data/train/index.json"


def valid() -> dict[str, Any]:
    return {
        "format": "pydata-shards",
        "version": 1,
        "samples": 30,
        "schema": {
            "image": {"kind": "tensor", "dtype": "uint8", "shape": [3, 4, 4], "codec": "raw", "layout": "fixed"},
            "text": {"kind": "str", "dtype": "str", "shape": None, "codec": "raw", "layout": "indexed"},
        },
        "shards": [
            {"file": "shard-00000.pds", "samples": 20, "bytes": 12288, "crc32c": 1234},
            {"file": "shard-00001.pds", "samples": 10, "bytes": 8192, "crc32c": 4294967295},
        ],
        "metadata": {"origin": "test"},
    }


def parse(data: Any) -> DatasetIndex:
    return DatasetIndex.parse(json.dumps(data), SOURCE)


def test_constants() -> None:
    assert (FORMAT_NAME, FORMAT_VERSION, INDEX_NAME) == ("pydata-shards", 1, "index.json")


def test_a_valid_index_parses() -> None:
    index = parse(valid())
    assert index.schema == {"image": Field("uint8", (3, 4, 4)), "text": Field("str")}
    assert index.shards == (ShardEntry("shard-00000.pds", 20, 12288, 1234),
                            ShardEntry("shard-00001.pds", 10, 8192, 4294967295))
    assert index.samples == 30
    assert index.nbytes == 12288 + 8192
    assert index.metadata == {"origin": "test"}


def test_to_json_round_trips_and_has_exactly_the_documented_keys() -> None:
    index = parse(valid())
    data = index.to_json()
    assert data == valid()
    assert list(data) == ["format", "version", "samples", "schema", "shards", "metadata"]
    assert DatasetIndex.parse(json.dumps(data).encode(), SOURCE) == index


def test_metadata_is_optional() -> None:
    data = valid()
    del data["metadata"]
    assert parse(data).metadata == {}


def test_write_is_atomic_and_read_index_reads_it_back(tmp_path: Path) -> None:
    index = parse(valid())
    path = index.write(tmp_path)
    assert path == tmp_path / "index.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
    assert read_index(tmp_path) == index
    assert path.read_bytes().endswith(b"\n")


def test_a_written_dataset_index_has_the_documented_types(make_dataset: Any) -> None:
    ds = make_dataset(12)
    data = json.loads((ds.path / "index.json").read_text(encoding="utf-8"))
    assert data["format"] == "pydata-shards"
    assert data["version"] == 1
    assert data["samples"] == 12
    assert list(data["schema"]) == list(ds.schema)
    for name, entry in data["schema"].items():
        assert entry == ds.schema[name].to_json()
        assert set(entry) == {"kind", "dtype", "shape", "codec", "layout"}
    for entry in data["shards"]:
        assert set(entry) == {"file", "samples", "bytes", "crc32c"}
        assert all(isinstance(entry[k], int) for k in ("samples", "bytes", "crc32c"))
        content = (ds.path / entry["file"]).read_bytes()
        assert (entry["bytes"], entry["crc32c"]) == (len(content), pydata.checksum(content))
    assert data["metadata"] == {}


# -- parse errors, each named ----------------------------------------------------------------------


def test_not_json() -> None:
    with pytest.raises(FormatError, match=rf"^{SOURCE}: not valid JSON"):
        DatasetIndex.parse('{"format": "pydata-shards", ', SOURCE)


def test_not_utf8() -> None:
    with pytest.raises(FormatError, match=rf"^{SOURCE}: not valid JSON"):
        DatasetIndex.parse(b"\xff\xfe{}", SOURCE)


@pytest.mark.parametrize("data", [[1, 2], "pydata-shards", {"format": "safetensors"}])
def test_wrong_format(data: Any) -> None:
    with pytest.raises(FormatError, match=rf"^{SOURCE}: not a pydata index \(expected \"format\": \"pydata-shards\"\)"):
        parse(data)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_version(version: Any) -> None:
    data = valid()
    data["version"] = version
    with pytest.raises(FormatError, match=rf"^{SOURCE}: format version {version!r}, this pydata reads version 1"):
        parse(data)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("format", r"not a pydata index"),
        ("version", r"format version None"),
        ("schema", r"'schema' must be a non-empty object of fields"),
        ("shards", r"'shards' must be a list"),
        ("samples", r"'samples' is None but the shards hold 30"),
    ],
)
def test_missing_keys(key: str, match: str) -> None:
    data = valid()
    del data[key]
    with pytest.raises(FormatError, match=rf"^{SOURCE}: {match}"):
        parse(data)


@pytest.mark.parametrize(
    "entry",
    [
        "shard-00000.pds",
        {"file": "shard-00000.pds", "samples": 20, "bytes": 12288},
        {"file": "shard-00000.pds", "samples": "20", "bytes": 12288, "crc32c": 1},
        {"file": "shard-00000.pds", "samples": 20, "bytes": 12288.0, "crc32c": 1},
        {"file": 7, "samples": 20, "bytes": 12288, "crc32c": 1},
        {"file": "shard-00000.pds", "samples": 20, "bytes": 12288, "crc32c": None},
    ],
)
def test_bad_shard_entry(entry: Any) -> None:
    data = valid()
    data["shards"][1] = entry
    with pytest.raises(FormatError, match=rf"^{SOURCE}: shards\[1\] must be an object with file, samples, bytes, crc32c"):
        parse(data)


def test_samples_mismatch() -> None:
    data = valid()
    data["samples"] = 31
    with pytest.raises(FormatError, match=rf"^{SOURCE}: 'samples' is 31 but the shards hold 30"):
        parse(data)


@pytest.mark.parametrize("name", ["../shard-00000.pds", "sub/shard-00000.pds", "/abs/shard.pds", ".hidden.pds", "", ".."])
def test_path_like_file_names_are_rejected(name: str) -> None:
    data = valid()
    data["shards"][0]["file"] = name
    with pytest.raises(FormatError, match=rf"^{SOURCE}: shards\[0\]: file {name!r} must be a plain file name"):
        parse(data)


def test_metadata_must_be_an_object() -> None:
    data = valid()
    data["metadata"] = [1]
    with pytest.raises(FormatError, match=rf"^{SOURCE}: 'metadata' must be an object"):
        parse(data)


def test_a_bad_schema_is_named() -> None:
    data = valid()
    data["schema"]["image"]["layout"] = "indexed"
    with pytest.raises(FormatError, match=rf"^{SOURCE}: schema field 'image': layout 'indexed' disagrees"):
        parse(data)


def test_read_index_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FormatError, match=rf"^{tmp_path / 'index.json'}: not a pydata index"):
        read_index(tmp_path)


def test_read_index_of_a_directory_without_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no dataset at .*index.json' is missing") as info:
        read_index(tmp_path)
    assert info.value.filename == str(tmp_path / "index.json")

