"""pydata.format.writer: ShardWriter round trips, shard splitting, validation, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata import ClosedError, Field, FormatError, ShardWriter, merge_index, read_index
from pydata.format import BatchReader, ShardReader


def read_everything(path: Path, io: str = "mmap") -> dict[str, Any]:
    index = read_index(path)
    shards = [ShardReader(path / s.file, s, index.schema, io=io) for s in index.shards]
    reader = BatchReader(shards, index.schema)
    return reader.read_batch(np.arange(reader.samples))


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# -- round trips -----------------------------------------------------------------------------------


def test_every_field_kind_round_trips(make_dataset: Any) -> None:
    ds = make_dataset(30)
    assert len(read_index(ds.path).shards) > 1
    got = read_everything(ds.path)
    want = ds.batch(range(len(ds)))
    for name, field in ds.schema.items():
        if isinstance(want[name], np.ndarray):
            assert got[name].dtype == field.storage_dtype, name
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        elif field.kind == "tensor":
            assert [a.shape for a in got[name]] == [a.shape for a in want[name]], name
            for a, b in zip(got[name], want[name], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert got[name] == want[name], name


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("codec", pydata.CODECS)
def test_fixed_shape_float_tensors_round_trip_with_every_codec(tmp_path: Path, codec: str, dtype: str) -> None:
    x = pydata.synthetic.smooth_latents(10, 4, 8, dtype=dtype, seed=3)
    with ShardWriter(tmp_path / "d", {"x": Field(dtype, (4, 8, 8), codec=codec)}, shard_bytes=3000,
                     progress=False) as w:
        for row in x:
            w.write({"x": row})
    index = read_index(tmp_path / "d")
    assert index.schema["x"].codec == codec
    assert index.schema["x"].layout == ("fixed" if codec == "raw" else "indexed")
    got = read_everything(tmp_path / "d")["x"]
    assert got.dtype == np.dtype(dtype)
    assert got.shape == x.shape
    if codec in ("raw", "lz4", "shuffle+lz4"):
        np.testing.assert_array_equal(got, x)
    else:  # exactly what the codec decodes to, and within its documented error
        np.testing.assert_array_equal(got, np.stack([pydata.decode(pydata.encode(r, codec)) for r in x]))
        scale = np.abs(x.astype(np.float32)).max(axis=(2, 3), keepdims=True)
        assert np.all(np.abs(got.astype(np.float32) - x) <= scale / 8 + 1e-3)


@pytest.mark.parametrize("codec", ["raw", "lz4", "shuffle+lz4"])
def test_variable_shape_tensors_round_trip(tmp_path: Path, codec: str) -> None:
    values = [np.arange(k * 3, dtype=np.int32).reshape(k, 3) for k in range(5)]
    values += [np.array(7, np.int32), np.zeros((2, 0, 4), np.int32)]
    with ShardWriter(tmp_path / "d", {"v": Field("int32", None, codec=codec)}, progress=False) as w:
        for v in values:
            w.write({"v": v})
    got = read_everything(tmp_path / "d")["v"]
    assert [g.shape for g in got] == [v.shape for v in values]
    for g, v in zip(got, values, strict=True):
        assert g.dtype == np.int32
        np.testing.assert_array_equal(g, v)


def test_bytes_and_str_round_trip(tmp_path: Path) -> None:
    blobs = [b"", b"\x00\xff", bytes(range(256)), b"x" * 5000]
    texts = ["", "ascii", "ünïcødé ✓ 🚀", "a" * 3000]
    with ShardWriter(tmp_path / "d", {"b": Field("bytes"), "s": Field("str")}, shard_bytes=4096,
                     progress=False) as w:
        for b, s in zip(blobs, texts, strict=True):
            w.write({"b": b, "s": s})
    got = read_everything(tmp_path / "d")
    assert got["b"] == blobs
    assert got["s"] == texts


def test_scalars_round_trip_from_python_and_numpy_values(tmp_path: Path) -> None:
    schema = {"i": Field("int64", ()), "f": Field("float32", ()), "ok": Field("bool", ()), "u": Field("uint8", ())}
    rows = [(3, 0.5, True, 255), (np.int64(-4), np.float32(2.25), np.bool_(False), np.uint8(0)), (0, 7, False, 1)]
    with ShardWriter(tmp_path / "d", schema, progress=False) as w:
        for i, f, ok, u in rows:
            w.write({"i": i, "f": f, "ok": ok, "u": u})
    got = read_everything(tmp_path / "d")
    assert got["i"].tolist() == [3, -4, 0]
    assert got["f"].tolist() == [0.5, 2.25, 7.0]
    assert got["ok"].tolist() == [True, False, False]
    assert got["u"].tolist() == [255, 0, 1]
    assert got["i"].shape == (3,)


@pytest.mark.parametrize("codec", ["raw", "shuffle+lz4", "int8", "fp8+lz4"])
def test_bfloat16_tensors_round_trip_as_their_bits(tmp_path: Path, codec: str) -> None:
    x = torch.randn(6, 2, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with ShardWriter(tmp_path / "d", {"x": Field(torch.bfloat16, (2, 5), codec=codec)}, progress=False) as w:
        for row in x:
            w.write({"x": row})
    assert read_index(tmp_path / "d").schema["x"].dtype == "bfloat16"
    got = read_everything(tmp_path / "d")["x"]
    assert got.dtype == np.uint16
    bits = x.view(torch.int16).numpy().view(np.uint16)
    if codec == "raw" or codec == "shuffle+lz4":
        np.testing.assert_array_equal(got, bits)
    else:
        want = np.stack([pydata.decode(pydata.encode(r, codec, dtype="bfloat16")) for r in bits])
        np.testing.assert_array_equal(got, want)
        decoded = torch.from_numpy(got.view(np.int16)).view(torch.bfloat16).float()
        assert torch.allclose(decoded, x.float(), atol=0.15 * float(x.float().abs().max()))


def test_bfloat16_column_from_a_torch_tensor(tmp_path: Path) -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3).to(torch.bfloat16)
    with ShardWriter(tmp_path / "d", {"x": Field("bfloat16", (3,))}, progress=False) as w:
        w.write_batch({"x": x})
    np.testing.assert_array_equal(read_everything(tmp_path / "d")["x"], x.view(torch.int16).numpy().view(np.uint16))


def test_zero_size_fields_are_written(tmp_path: Path) -> None:
    schema = {"empty": Field("float32", (0, 3)), "y": Field("int8", (2,))}
    with ShardWriter(tmp_path / "d", schema, progress=False) as w:
        w.write({"empty": np.zeros((0, 3), np.float32), "y": np.array([1, 2], np.int8)})
        w.write_batch({"empty": np.zeros((2, 0, 3), np.float32), "y": np.ones((2, 2), np.int8)})
    got = read_everything(tmp_path / "d")
    assert got["empty"].shape == (3, 0, 3)
    assert got["y"].tolist() == [[1, 2], [1, 1], [1, 1]]


def test_metadata_is_stored_in_the_index(tmp_path: Path) -> None:
    meta = {"source": "test", "classes": ["a", "b"], "n": 3}
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, metadata=meta, progress=False) as w:
        w.write({"x": 1})
    assert read_index(tmp_path / "d").metadata == meta


def test_an_empty_dataset_has_an_index_and_no_shards(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", (2,))}, progress=False) as w:
        w.write_batch({"x": np.zeros((0, 2), np.uint8)})
    index = read_index(tmp_path / "d")
    assert index.samples == 0
    assert index.shards == ()
    assert files(tmp_path / "d") == ["index.json"]


def test_close_returns_the_index_and_a_closed_writer_refuses_more(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, progress=False)
    w.write({"x": 1})
    index = w.close()
    assert index == read_index(tmp_path / "d")
    with pytest.raises(ClosedError, match=r"ShardWriter for '.*d' is closed"):
        w.write({"x": 2})
    with pytest.raises(ClosedError, match="closed"):
        w.write_batch({"x": [2]})
    with pytest.raises(ClosedError, match="closed"):
        w.close()


def test_close_inside_the_with_block_is_allowed(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, progress=False) as w:
        w.write({"x": 1})
        w.close()
    assert read_index(tmp_path / "d").samples == 1


def test_the_writer_copies_what_it_buffers_so_callers_may_reuse_buffers(tmp_path: Path) -> None:
    schema = {"x": Field("float32", (2,)), "t": Field("float32", (2,)), "c": Field("float32", (2,), codec="lz4")}
    buf, tensor = np.zeros(2, np.float32), torch.zeros(2)
    column = np.zeros((2, 2), np.float32)
    with ShardWriter(tmp_path / "d", schema, progress=False) as w:
        for i in range(3):
            buf[:] = i
            tensor[:] = i
            w.write({"x": buf, "t": tensor, "c": buf})
        for i in (3, 5):
            column[:] = [[i, i], [i + 1, i + 1]]
            w.write_batch({"x": column, "t": torch.from_numpy(column), "c": column})
    got = read_everything(tmp_path / "d")
    want = np.repeat(np.arange(7, dtype=np.float32)[:, None], 2, axis=1)
    for name in schema:
        np.testing.assert_array_equal(got[name], want, err_msg=name)


# -- write vs write_batch, shard splitting ---------------------------------------------------------


def test_write_and_write_batch_give_byte_identical_shards(make_dataset: Any) -> None:
    one = make_dataset(40, shard_bytes=1500, name="one")
    batched = make_dataset(40, shard_bytes=1500, name="batched", batched=True)
    names = files(one.path)
    assert names == files(batched.path)
    assert len(names) > 3
    for name in names:
        assert (one.path / name).read_bytes() == (batched.path / name).read_bytes(), name


def test_write_batch_in_uneven_chunks_matches_write(tmp_path: Path) -> None:
    schema = {"x": Field("uint8", (10,)), "b": Field("bytes")}
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (50, 10), dtype=np.uint8)
    b = [rng.bytes(int(k)) for k in rng.integers(0, 60, 50)]
    with ShardWriter(tmp_path / "a", schema, shard_bytes=200, progress=False) as w:
        for i in range(50):
            w.write({"x": x[i], "b": b[i]})
    with ShardWriter(tmp_path / "b", schema, shard_bytes=200, progress=False) as w:
        for lo, hi in [(0, 7), (7, 8), (8, 8), (8, 31), (31, 50)]:
            w.write_batch({"x": x[lo:hi], "b": b[lo:hi]})
    assert files(tmp_path / "a") == files(tmp_path / "b")
    for name in files(tmp_path / "a"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def check_split(path: Path, row_bytes: list[int], shard_bytes: int) -> None:
    """Each shard closes at the first sample that brings it to ``shard_bytes``."""
    counts = [s.samples for s in read_index(path).shards]
    assert sum(counts) == len(row_bytes)
    start = 0
    for k, count in enumerate(counts):
        sizes = row_bytes[start : start + count]
        if k < len(counts) - 1:
            assert sum(sizes) >= shard_bytes, (k, sizes)
        assert sum(sizes[:-1]) < shard_bytes, (k, sizes)
        start += count


@pytest.mark.parametrize("batched", [False, True])
def test_shards_are_split_by_shard_bytes(tmp_path: Path, batched: bool) -> None:
    x = np.arange(25 * 100, dtype=np.uint8).reshape(25, 100)
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", (100,))}, shard_bytes=1000, progress=False) as w:
        if batched:
            w.write_batch({"x": x})
        else:
            for row in x:
                w.write({"x": row})
    index = read_index(tmp_path / "d")
    assert [s.samples for s in index.shards] == [10, 10, 5]
    assert [s.file for s in index.shards] == ["shard-00000.pds", "shard-00001.pds", "shard-00002.pds"]
    for s in index.shards:
        assert (tmp_path / "d" / s.file).stat().st_size == s.nbytes
    np.testing.assert_array_equal(read_everything(tmp_path / "d")["x"], x)


@pytest.mark.parametrize("batched", [False, True])
def test_a_huge_sample_closes_the_shard_it_lands_in(tmp_path: Path, batched: bool) -> None:
    blobs = [b"a" * 10] * 3 + [b"H" * 100_000] + [b"b" * 10] * 20 + [b"I" * 50_000]
    with ShardWriter(tmp_path / "d", {"b": Field("bytes")}, shard_bytes=100, progress=False) as w:
        if batched:
            w.write_batch({"b": blobs})
        else:
            for blob in blobs:
                w.write({"b": blob})
    check_split(tmp_path / "d", [len(b) for b in blobs], 100)
    assert [s.samples for s in read_index(tmp_path / "d").shards] == [4, 10, 10, 1]
    assert read_everything(tmp_path / "d")["b"] == blobs


def test_split_rule_holds_for_mixed_rows(make_dataset: Any) -> None:
    ds = make_dataset(60, shard_bytes=700, batched=True)
    sizes = []
    for sample in ds.samples:
        total = 0
        for name, field in ds.schema.items():
            if field.layout == "fixed":
                total += field.row_nbytes
            elif field.kind == "tensor":
                bf = "bfloat16" if field.dtype == "bfloat16" else None
                total += len(pydata.encode(np.ascontiguousarray(sample[name]), field.codec, dtype=bf))
            else:
                total += len(sample[name].encode() if isinstance(sample[name], str) else sample[name])
        sizes.append(total)
    check_split(ds.path, sizes, 700)


# -- validation ------------------------------------------------------------------------------------


@pytest.fixture
def writer(tmp_path: Path) -> Any:
    schema = {"x": Field("float32", (2,)), "b": Field("bytes"), "s": Field("str"), "v": Field("int16", None, codec="lz4")}
    w = ShardWriter(tmp_path / "d", schema, progress=False)
    for _ in range(3):
        w.write({"x": np.zeros(2, np.float32), "b": b"", "s": "", "v": np.zeros(1, np.int16)})
    yield w
    w.abort()


GOOD = {"x": np.zeros(2, np.float32), "b": b"ok", "s": "ok", "v": np.zeros(2, np.int16)}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": None}, r"sample 3: fields do not match the schema: missing \['x'\], unexpected \[\]"),
        ({"z": 1}, r"sample 3: fields do not match the schema: missing \[\], unexpected \['z'\]"),
        ({"x": np.zeros(2, np.float64)}, r"sample 3, field 'x': expected dtype float32, got float64"),
        ({"x": np.zeros((2, 1), np.float32)}, r"sample 3, field 'x': expected shape \(2,\), got \(2, 1\)"),
        ({"v": np.zeros(2, np.int32)}, r"sample 3, field 'v': expected dtype int16, got int32"),
        ({"x": "no"}, r"sample 3, field 'x': expected dtype float32, got str"),
        ({"b": "text"}, r"sample 3, field 'b': expected bytes, got str"),
        ({"s": b"bytes"}, r"sample 3, field 's': expected str, got bytes"),
        ({"b": 5}, r"sample 3, field 'b': expected bytes, got int"),
    ],
)
def test_write_errors_name_field_and_sample(writer: Any, change: dict[str, Any], match: str) -> None:
    sample = {**GOOD, **change}
    sample = {k: v for k, v in sample.items() if v is not None}
    with pytest.raises(FormatError, match=match):
        writer.write(sample)


def test_a_non_mapping_sample_is_refused(writer: Any) -> None:
    with pytest.raises(FormatError, match=r"sample 3: expected a mapping of field -> value, got list"):
        writer.write([1, 2])


def test_a_rejected_sample_leaves_no_partial_row(tmp_path: Path) -> None:
    schema = {"a": Field("int8", (2,)), "b": Field("int8", (2,))}
    with ShardWriter(tmp_path / "d", schema, progress=False) as w:
        w.write({"a": np.ones(2, np.int8), "b": np.ones(2, np.int8)})
        with pytest.raises(FormatError, match=r"sample 1, field 'b'"):
            w.write({"a": np.full(2, 9, np.int8), "b": np.ones(3, np.int8)})
        w.write({"a": np.full(2, 2, np.int8), "b": np.full(2, 2, np.int8)})
    got = read_everything(tmp_path / "d")
    assert got["a"].tolist() == [[1, 1], [2, 2]]
    assert got["b"].tolist() == [[1, 1], [2, 2]]


def test_write_batch_errors_name_field_and_samples(writer: Any) -> None:
    with pytest.raises(FormatError, match=r"samples 3\.\.4, field 'x': expected shape \(2, 2\), got \(2, 3\)"):
        writer.write_batch({"x": np.zeros((2, 3), np.float32), "b": [b"", b""], "s": ["", ""],
                            "v": [np.zeros(1, np.int16)] * 2})
    with pytest.raises(FormatError, match=r"sample 4, field 'b': expected bytes, got str"):
        writer.write_batch({"x": np.zeros((2, 2), np.float32), "b": [b"", "x"], "s": ["", ""],
                            "v": [np.zeros(1, np.int16)] * 2})
    with pytest.raises(FormatError, match=r"batch starting at sample 3: columns differ in length"):
        writer.write_batch({"x": np.zeros((2, 2), np.float32), "b": [b""], "s": ["", ""],
                            "v": [np.zeros(1, np.int16)] * 2})
    with pytest.raises(FormatError, match=r"batch starting at sample 3: fields do not match the schema: missing \['v'\]"):
        writer.write_batch({"x": np.zeros((2, 2), np.float32), "b": [b""] * 2, "s": ["", ""]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shard_bytes": 0}, r"shard_bytes must be positive, got 0"),
        ({"partition": (2, 2)}, r"partition must be \(k, n\) with 0 <= k < n, got \(2, 2\)"),
        ({"partition": (-1, 2)}, r"partition must be"),
        ({"metadata": {"f": object()}}, r"metadata must be JSON-serialisable"),
    ],
)
def test_bad_writer_options_raise_format_error(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FormatError, match=match):
        ShardWriter(tmp_path / "d", {"x": Field("uint8")}, progress=False, **kwargs)


def test_bad_schemas_raise_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="schema must be a non-empty mapping"):
        ShardWriter(tmp_path / "d", {}, progress=False)
    with pytest.raises(FormatError, match=r"schema field 'x' must be a pydata.Field"):
        ShardWriter(tmp_path / "d", {"x": "uint8"}, progress=False)


# -- existing datasets, failures, temporary files --------------------------------------------------


def test_an_existing_dataset_is_not_overwritten_by_default(make_dataset: Any) -> None:
    ds = make_dataset(10)
    before = {name: (ds.path / name).read_bytes() for name in files(ds.path)}
    with pytest.raises(FileExistsError, match=r"already holds a dataset \(.*\); pass overwrite=True"):
        ShardWriter(ds.path, {"x": Field("uint8")}, progress=False)
    assert {name: (ds.path / name).read_bytes() for name in files(ds.path)} == before


def test_overwrite_replaces_the_dataset_and_removes_stale_shards(make_dataset: Any) -> None:
    ds = make_dataset(40, shard_bytes=1000)
    assert len(ds.shard_paths()) > 2
    with ShardWriter(ds.path, {"y": Field("int32", ())}, overwrite=True, progress=False) as w:
        w.write_batch({"y": np.arange(5, dtype=np.int32)})
    assert files(ds.path) == ["index.json", "shard-00000.pds"]
    assert read_everything(ds.path)["y"].tolist() == [0, 1, 2, 3, 4]


def test_overwrite_removes_the_old_index_before_writing(make_dataset: Any) -> None:
    ds = make_dataset(10)
    w = ShardWriter(ds.path, {"y": Field("int32", ())}, overwrite=True, progress=False)
    assert not (ds.path / "index.json").exists()
    w.abort()


def test_overwrite_removes_the_shards_of_a_merged_dataset(tmp_path: Path) -> None:
    for k in range(2):
        with ShardWriter(tmp_path, {"y": Field("int32", ())}, partition=(k, 2), progress=False) as w:
            w.write({"y": k})
    merge_index(tmp_path)
    assert files(tmp_path) == ["index.json", "shard-00000-00000.pds", "shard-00001-00000.pds"]
    with ShardWriter(tmp_path, {"y": Field("int32", ())}, overwrite=True, progress=False) as w:
        w.write({"y": 7})
    assert files(tmp_path) == ["index.json", "shard-00000.pds"]


def test_an_exception_inside_with_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with pytest.raises(RuntimeError, match="conversion failed"):  # noqa: PT012 (the failure is mid-write)
        with ShardWriter(path, {"x": Field("uint8", (100,))}, shard_bytes=250, progress=False) as w:
            for i in range(10):
                w.write({"x": np.full(100, i, np.uint8)})
            assert any(name.endswith(".pds") for name in files(path))
            raise RuntimeError("conversion failed")
    assert files(path) == []


def test_a_validation_error_inside_with_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with pytest.raises(FormatError, match="sample 5"), \
            ShardWriter(path, {"x": Field("uint8", (100,))}, shard_bytes=250, progress=False) as w:
        for i in range(5):
            w.write({"x": np.full(100, i, np.uint8)})
        w.write({"x": np.zeros(3, np.uint8)})
    assert files(path) == []


def test_no_temporary_files_are_left(make_dataset: Any) -> None:
    ds = make_dataset(30, shard_bytes=500)
    names = files(ds.path)
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    assert "index.json" in names
    assert all(n == "index.json" or (n.startswith("shard-") and n.endswith(".pds")) for n in names)


def test_the_index_lists_sizes_and_checksums_of_the_files(make_dataset: Any) -> None:
    ds = make_dataset(20, shard_bytes=800)
    data = json.loads((ds.path / "index.json").read_text())
    for entry in data["shards"]:
        content = (ds.path / entry["file"]).read_bytes()
        assert entry["bytes"] == len(content)
        assert entry["crc32c"] == pydata.checksum(content)


def test_progress_false_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, progress=False, total=3) as w:
        for i in range(3):
            w.write({"x": i})
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_progress_true_shows_a_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, progress=True, total=3) as w:
        for i in range(3):
            w.write({"x": i})
    assert "writing d" in capsys.readouterr().err


def test_repr(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path / "d", {"x": Field("uint8", ())}, progress=False)
    w.write({"x": 1})
    assert repr(w) == f"ShardWriter('{tmp_path / 'd'}', fields=['x'], samples=1, shards=0)"
    w.abort()
