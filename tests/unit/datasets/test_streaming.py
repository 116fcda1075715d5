"""StreamingDataset over a file:// remote: order, exactly-once over ranks and workers, resume,
and a cache smaller than the dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.datasets.streaming import StreamingDataset

SAMPLES = 403


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    data = {"image": rng.integers(0, 256, (SAMPLES, 3, 8, 8), dtype=np.uint8),
            "label": np.arange(SAMPLES, dtype=np.int64)}
    path = tmp_path_factory.mktemp("remote") / "ds"
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=5_000, progress=False) as writer:
        writer.write_batch(data)
    return f"file://{path}", data


def make(remote: tuple[str, Any], tmp_path: Path, **kwargs: Any) -> StreamingDataset:
    kwargs.setdefault("local", tmp_path / "cache")
    return StreamingDataset(remote[0], batch_size=16, **kwargs)


def labels(batches: Any) -> list[int]:
    return [i for b in batches for i in b["label"].tolist()]


def test_an_epoch_delivers_every_sample_once_with_its_bytes(remote: tuple[str, Any], tmp_path: Path) -> None:
    ds = make(remote, tmp_path)
    assert len(ds.index.shards) > 8
    batches = list(ds)
    assert len(batches) == len(ds) == -(-SAMPLES // 16)
    for batch in batches:
        np.testing.assert_array_equal(batch["image"].numpy(), remote[1]["image"][batch["label"].numpy()])
    ids = labels(batches)
    assert sorted(ids) == list(range(SAMPLES)) and ids != list(range(SAMPLES))


def test_order_is_deterministic_and_changes_by_epoch(remote: tuple[str, Any], tmp_path: Path) -> None:
    first = labels(make(remote, tmp_path, seed=5))
    again = make(remote, tmp_path, seed=5)
    assert labels(again) == first
    assert labels(again) != first  # the next epoch
    assert labels(make(remote, tmp_path, shuffle=False)) == list(range(SAMPLES))


def test_a_batch_reads_from_few_shards(remote: tuple[str, Any], tmp_path: Path) -> None:
    ds = make(remote, tmp_path, shuffle_window=2)
    starts = ds._starts
    for batch in ds:
        shards = np.unique(np.searchsorted(starts, batch["label"].numpy(), side="right") - 1)
        assert len(shards) <= 4  # at most two windows of two shards (a batch may straddle them)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_times_workers_read_each_sample_once(remote: tuple[str, Any], tmp_path: Path,
                                                   world_size: int, workers: int) -> None:
    per_rank = []
    for rank in range(world_size):
        ds = make(remote, tmp_path, rank=rank, world_size=world_size)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
        per_rank.append(labels(loader))
    assert len({len(p) for p in per_rank}) == 1
    everything = [i for p in per_rank for i in p]
    assert len(everything) == len(set(everything)) == (SAMPLES // world_size) * world_size


def test_resume_continues_the_same_order(remote: tuple[str, Any], tmp_path: Path) -> None:
    full = labels(make(remote, tmp_path, seed=2))
    ds = make(remote, tmp_path, seed=2)
    iterator = iter(ds)
    head = labels(next(iterator) for _ in range(7))
    state = ds.state_dict()
    resumed = make(remote, tmp_path, seed=2)
    resumed.load_state_dict(state)
    assert head + labels(resumed) == full


def test_state_from_the_consumer_with_workers(remote: tuple[str, Any], tmp_path: Path) -> None:
    full = labels(make(remote, tmp_path, seed=4))
    ds = make(remote, tmp_path, seed=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    head = []
    for i, batch in enumerate(loader):
        head.extend(batch["label"].tolist())
        if i == 4:
            break
    resumed = make(remote, tmp_path, seed=4)
    resumed.load_state_dict(ds.state_dict(batches_consumed=5))
    rest = labels(torch.utils.data.DataLoader(resumed, batch_size=None, num_workers=1))
    assert head + rest == full


def test_elastic_resume_onto_another_world_size(remote: tuple[str, Any], tmp_path: Path) -> None:
    first: list[int] = []
    states = []
    for rank in range(2):
        ds = make(remote, tmp_path, rank=rank, world_size=2)
        iterator = iter(ds)
        first.extend(labels(next(iterator) for _ in range(3)))
        states.append(ds.state_dict())
    assert states[0] == states[1]
    second = []
    for rank in range(3):
        ds = make(remote, tmp_path, rank=rank, world_size=3)
        ds.load_state_dict(states[0])
        second.extend(labels(ds))
    everything = first + second
    assert len(everything) == len(set(everything))
    remaining = SAMPLES - states[0]["consumed"]
    assert len(second) == remaining - remaining % 3


def test_a_cache_smaller_than_the_dataset(remote: tuple[str, Any], tmp_path: Path) -> None:
    sizes = [s.nbytes for s in make(remote, tmp_path / "probe").index.shards]
    limit = max(sizes) * 8
    assert limit < sum(sizes)
    ds = make(remote, tmp_path, cache_limit=limit, shuffle_window=2, prefetch_shards=1)
    for _ in range(2):
        assert sorted(labels(ds)) == list(range(SAMPLES))
        assert ds.cache.cached_bytes() <= limit


def test_a_cache_too_small_for_the_readers_fails_at_start(remote: tuple[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_limit"):
        make(remote, tmp_path, cache_limit=1000)


def test_a_state_of_another_dataset_is_refused(remote: tuple[str, Any], tmp_path: Path) -> None:
    ds = make(remote, tmp_path)
    with pytest.raises(ValueError, match="num_samples"):
        ds.load_state_dict(ds.state_dict() | {"num_samples": 3})


@pytest.mark.parametrize("threads", [1, 2])
def test_the_loader_reads_a_streaming_dataset(remote: tuple[str, Any], tmp_path: Path, threads: int) -> None:
    sizes = [s.nbytes for s in make(remote, tmp_path / "probe").index.shards]
    limit = max(sizes) * 10  # two producers, each with a batch across up to two windows of two
    assert limit < sum(sizes)
    ds = make(remote, tmp_path, cache_limit=limit, shuffle_window=2, prefetch_shards=1)
    loader = pydata.Loader(ds, 32, seed=5, num_threads=threads, audit=True)
    batches = list(loader)
    for batch in batches:
        np.testing.assert_array_equal(batch["image"].numpy(), remote[1]["image"][batch["label"].numpy()])
    assert sorted(labels(batches)) == list(range(SAMPLES))
    assert ds.cache.cached_bytes() <= limit
    # the Loader's order over a streaming dataset is the dataset's shard-window order
    assert labels(batches) == ds.epoch_order(0, seed=5).tolist()


def test_the_loader_resumes_a_streaming_dataset(remote: tuple[str, Any], tmp_path: Path) -> None:
    ds = make(remote, tmp_path)
    full = labels(pydata.Loader(ds, 32, seed=2))
    first = pydata.Loader(ds, 32, seed=2, num_threads=2)
    iterator = iter(first)
    head = labels(next(iterator) for _ in range(4))
    iterator.close()
    resumed = pydata.Loader(ds, 32, seed=2, num_threads=1)
    resumed.load_state_dict(first.state_dict())
    assert head + labels(resumed) == full


def test_per_sample_mode_gives_a_plain_dataloader_the_same_batches(remote: tuple[str, Any],
                                                                   tmp_path: Path) -> None:
    batched = torch.utils.data.DataLoader(make(remote, tmp_path, seed=5), batch_size=None, num_workers=2)
    samples = make(remote, tmp_path, seed=5, per_sample=True)
    plain = torch.utils.data.DataLoader(samples, batch_size=16, num_workers=2)
    assert len(plain) == len(batched)
    pairs = list(zip(batched, plain, strict=True))
    for want, got in pairs:
        assert torch.equal(want["label"], got["label"])
        assert torch.equal(want["image"], got["image"])
    assert sorted(i for want, _ in pairs for i in want["label"].tolist()) == list(range(SAMPLES))


def test_per_sample_mode_resumes_from_the_consumers_count(remote: tuple[str, Any], tmp_path: Path) -> None:
    full = labels(make(remote, tmp_path, seed=6))
    ds = make(remote, tmp_path, seed=6, per_sample=True)
    head = []
    for i, batch in enumerate(torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2)):
        head.extend(batch["label"].tolist())
        if i == 6:
            break
    resumed = make(remote, tmp_path, seed=6, per_sample=True)
    resumed.load_state_dict(ds.state_dict(batches_consumed=7))
    rest = labels(torch.utils.data.DataLoader(resumed, batch_size=16, num_workers=1))
    assert head + rest == full
    direct = make(remote, tmp_path, seed=6, per_sample=True)
    first = [int(s["label"]) for _, s in zip(range(40), direct, strict=False)]
    again = make(remote, tmp_path, seed=6, per_sample=True)
    again.load_state_dict(direct.state_dict())  # counted sample by sample without workers
    assert first + [int(s["label"]) for s in again] == full


def test_a_cache_too_small_for_the_workers_fails_when_they_start(remote: tuple[str, Any],
                                                                 tmp_path: Path) -> None:
    shard = max(s.nbytes for s in make(remote, tmp_path).index.shards)
    ds = make(remote, tmp_path, cache_limit=int(7.5 * shard))  # a window of 4, 2 ahead, 1 more
    assert len(labels(ds)) == SAMPLES  # enough for one reader
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    with pytest.raises(ValueError, match="cache_limit .* smaller than what the readers need at once"):
        next(iter(loader))
