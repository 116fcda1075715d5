"""pydata.format.merge: partitions written by separate processes, joined by merge_index."""

from __future__ import annotations

import multiprocessing
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pydata import Field, FormatError, ShardWriter, merge_index, read_index
from pydata.format import BatchReader, ShardReader

WORKER = Path(__file__).with_name("partition_worker.py")
worker = runpy.run_path(str(WORKER))  # the same make_sample as in the worker processes
COUNTS = [7, 0, 12, 4]  # unequal partitions, one of them empty


def read_all(path: Path) -> dict[str, Any]:
    index = read_index(path)
    shards = [ShardReader(path / s.file, s, index.schema) for s in index.shards]
    reader = BatchReader(shards, index.schema)
    return reader.read_batch(np.arange(reader.samples))


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def write_in_processes(path: Path, counts: list[int]) -> None:
    """Runs one worker process per partition (spawn: nothing is inherited but the arguments)."""
    context = multiprocessing.get_context("spawn")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    processes = [
        context.Process(target=runpy.run_path, args=(str(WORKER),), kwargs={
            "run_name": "__main__",
            "init_globals": {"PATH": str(path), "K": k, "N": len(counts), "START": start, "COUNT": count},
        })
        for k, (start, count) in enumerate(zip(starts, counts, strict=True))
    ]
    for p in reversed(processes):  # finishing order does not matter
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * len(counts)


def test_partitions_from_separate_processes_merge_in_partition_order(tmp_path: Path) -> None:
    write_in_processes(tmp_path, COUNTS)
    assert not (tmp_path / "index.json").exists()
    assert [n for n in names(tmp_path) if n.startswith("index.part-")] == [
        f"index.part-{k:05d}-of-00004.json" for k in range(4)
    ]
    merged = merge_index(tmp_path)

    assert merged == read_index(tmp_path)
    assert merged.samples == sum(COUNTS)
    assert merged.schema == worker["SCHEMA"]
    files = [s.file for s in merged.shards]
    assert files == sorted(files)  # partition 0's shards first, each partition's in order
    assert all(f.startswith(("shard-00000-", "shard-00002-", "shard-00003-")) for f in files)
    assert len([f for f in files if f.startswith("shard-00002-")]) > 1
    assert names(tmp_path) == sorted(["index.json", *files])  # partition indexes removed

    got = read_all(tmp_path)
    want = [worker["make_sample"](i) for i in range(sum(COUNTS))]
    assert got["id"].tolist() == list(range(sum(COUNTS)))
    np.testing.assert_array_equal(got["x"], np.stack([s["x"] for s in want]))
    assert got["name"] == [s["name"] for s in want]
    for a, s in zip(got["v"], want, strict=True):
        np.testing.assert_array_equal(a, s["v"])


def write_partition(path: Path, k: int, n: int, schema: dict[str, Field] | None = None, **kwargs: Any) -> None:
    with ShardWriter(path, schema or {"y": Field("int32", ())}, partition=(k, n), progress=False, **kwargs) as w:
        w.write({"y": k})


def test_a_missing_partition_is_named(tmp_path: Path) -> None:
    write_partition(tmp_path, 0, 3)
    write_partition(tmp_path, 2, 3)
    with pytest.raises(FileNotFoundError, match=r"1 of 3 partitions have not finished \(missing index.part-00001-of-00003.json\)"):
        merge_index(tmp_path)
    assert not (tmp_path / "index.json").exists()
    assert (tmp_path / "index.part-00000-of-00003.json").exists()


def test_a_schema_mismatch_is_named(tmp_path: Path) -> None:
    write_partition(tmp_path, 0, 2)
    with ShardWriter(tmp_path, {"y": Field("int64", ())}, partition=(1, 2), progress=False) as w:
        w.write({"y": 1})
    with pytest.raises(FormatError, match=r"index.part-00001-of-00002.json': schema .* differs from partition 0's"):
        merge_index(tmp_path)
    assert not (tmp_path / "index.json").exists()
    assert len([n for n in names(tmp_path) if n.startswith("index.part-")]) == 2


def test_partitions_must_agree_on_their_number(tmp_path: Path) -> None:
    write_partition(tmp_path, 0, 2)
    write_partition(tmp_path, 1, 3)
    with pytest.raises(FormatError, match=r"partition indexes disagree on the number of partitions: \[2, 3\]"):
        merge_index(tmp_path)


def test_no_partitions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no partition indexes \(index.part-K-of-N.json\)"):
        merge_index(tmp_path)


def test_metadata_defaults_to_partition_zeros_and_can_be_given(tmp_path: Path) -> None:
    write_partition(tmp_path / "a", 0, 2, metadata={"from": 0})
    write_partition(tmp_path / "a", 1, 2, metadata={"from": 1})
    assert merge_index(tmp_path / "a").metadata == {"from": 0}
    write_partition(tmp_path / "b", 0, 1)
    assert merge_index(tmp_path / "b", metadata={"merged": True}).metadata == {"merged": True}
    assert read_index(tmp_path / "b").metadata == {"merged": True}


def test_a_partition_writer_refuses_to_overwrite_its_own_files(tmp_path: Path) -> None:
    write_partition(tmp_path, 0, 2)
    write_partition(tmp_path, 1, 2)  # other partitions do not conflict
    with pytest.raises(FileExistsError, match=r"index.part-00000-of-00002.json"):
        write_partition(tmp_path, 0, 2)
    write_partition(tmp_path, 0, 2, overwrite=True)
    assert merge_index(tmp_path).samples == 2
    assert read_all(tmp_path)["y"].tolist() == [0, 1]
