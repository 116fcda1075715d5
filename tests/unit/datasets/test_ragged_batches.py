"""``ragged=True``: variable-shape tensor fields batched as one pydata.Ragged, through every way a
batch is read (BatchReader mmap and pread, MemoryMappedDataset, DataLoader workers, Loader,
StreamingDataset batched and per sample), always equal to the rows as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata import Field, Loader, MemoryMappedDataset, Ragged, ShardWriter, StreamingDataset, create_dataloader

N = 150


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Any]]]:
    rng = np.random.default_rng(5)
    data: dict[str, list[Any]] = {
        "tokens": [rng.integers(0, 50_000, int(rng.integers(0, 300)), dtype=np.int32) for _ in range(N)],
        "boxes": [rng.standard_normal((int(rng.integers(0, 6)), 4)).astype(np.float32) for _ in range(N)],
        "label": list(np.arange(N, dtype=np.int64)),
    }
    path = tmp_path_factory.mktemp("ragged") / "ds"
    schema = {"tokens": Field("int32", None), "boxes": Field("float32", None, codec="lz4"),
              "label": Field("int64", ())}
    with ShardWriter(path, schema, shard_bytes=20_000, progress=False) as writer:
        writer.write_batch({"tokens": data["tokens"], "boxes": data["boxes"], "label": np.arange(N)})
    return path, data


def check_rows(value: Any, labels: Any, rows: list[Any]) -> None:
    assert isinstance(value, Ragged), type(value)
    assert len(value) == len(labels)
    for got, label in zip(value, np.asarray(labels).tolist()):
        np.testing.assert_array_equal(np.asarray(got), rows[label])


@pytest.mark.parametrize("io", ["mmap", "read"])
def test_a_batch_equals_the_rows_and_the_list_form(written: tuple[Path, Any], io: str) -> None:
    path, data = written
    ds = MemoryMappedDataset(path, io=io, ragged=True)
    indices = [149, 0, 77, 77, 3]
    batch = ds.read_batch(indices)
    assert isinstance(batch["label"], torch.Tensor)
    for name in ("tokens", "boxes"):
        check_rows(batch[name], indices, data[name])
        listed = MemoryMappedDataset(path, io=io).read_batch(indices)[name]
        assert all(torch.equal(a, b) for a, b in zip(batch[name], listed))
    assert batch["boxes"].shapes.shape == (5, 2)
    empty = ds.read_batch([])
    assert len(empty["tokens"]) == 0


def test_dataloader_workers_carry_ragged_batches(written: tuple[Path, Any]) -> None:
    path, data = written
    loader = create_dataloader(MemoryMappedDataset(path, ragged=True), 32, num_workers=2, seed=1)
    seen = []
    for batch in loader:
        check_rows(batch["tokens"], batch["label"], data["tokens"])
        check_rows(batch["boxes"], batch["label"], data["boxes"])
        seen.extend(batch["label"].tolist())
    assert sorted(seen) == list(range(N))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_loader_hands_out_ragged_batches(written: tuple[Path, Any], threads: int) -> None:
    path, data = written
    loader = Loader(MemoryMappedDataset(path, ragged=True), 32, num_threads=threads, audit=True)
    seen = []
    for batch in loader:
        check_rows(batch["tokens"], batch["label"], data["tokens"])
        seen.extend(batch["label"].tolist())
    assert sorted(seen) == list(range(N))
    stats = loader.stats()  # the ragged fields' bytes are counted
    assert stats["bytes_per_s"] * stats["seconds"] >= sum(r.nbytes for r in data["tokens"] + data["boxes"])


@pytest.mark.parametrize("per_sample", [False, True])
def test_streaming_batches_and_samples(written: tuple[Path, Any], tmp_path: Path, per_sample: bool) -> None:
    path, data = written
    ds = StreamingDataset(f"file://{path}", local=tmp_path / "cache", batch_size=16, ragged=True,
                          per_sample=per_sample)
    seen = []
    for item in ds:
        if per_sample:
            np.testing.assert_array_equal(item["tokens"].numpy(), data["tokens"][int(item["label"])])
            seen.append(int(item["label"]))
        else:
            check_rows(item["tokens"], item["label"], data["tokens"])
            seen.extend(item["label"].tolist())
    assert sorted(seen) == list(range(N))


def test_rows_of_mixed_rank_are_named(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "ds", {"x": Field("int16", None)}, progress=False) as writer:
        writer.write_batch({"x": [np.zeros(3, np.int16), np.zeros((2, 2), np.int16)]})
    ds = MemoryMappedDataset(tmp_path / "ds", ragged=True)
    with pytest.raises(pydata.FormatError, match=r"field 'x': .*row 1 has 2 dimension"):
        ds.read_batch([0, 1])
    assert [t.shape for t in MemoryMappedDataset(tmp_path / "ds").read_batch([0, 1])["x"]] == [(3,), (2, 2)]
