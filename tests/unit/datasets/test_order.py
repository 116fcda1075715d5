"""Properties of the epoch order and of its partition over ranks, workers and batches."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pydata.datasets.order as order_module
from pydata.datasets.order import (
    batch_slices,
    consumed_after,
    epoch_order,
    num_batches,
    per_rank_count,
    rank_share,
    resolve_rank_world,
    shard_window_order,
    worker_batches,
)

PROPERTY = settings(max_examples=50, deadline=None)
seeds = st.integers(0, 2**63)
epochs = st.integers(0, 1000)
worlds = st.integers(1, 5)


# --- epoch_order ---------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(0, 500), seed=seeds, epoch=epochs, shuffle=st.booleans())
def test_epoch_order_is_a_deterministic_permutation(
    n: int, seed: int, epoch: int, shuffle: bool
) -> None:
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle))
    if not shuffle:
        assert np.array_equal(order, np.arange(n))


@PROPERTY
@given(n=st.integers(20, 500), seed=seeds, epoch=epochs)
def test_epoch_order_differs_between_epochs_and_seeds(n: int, seed: int, epoch: int) -> None:
    order = epoch_order(n, seed=seed, epoch=epoch)
    assert not np.array_equal(order, epoch_order(n, seed=seed, epoch=epoch + 1))
    assert not np.array_equal(order, epoch_order(n, seed=seed ^ 1, epoch=epoch))


# --- shard_window_order --------------------------------------------------------------------


def most_open_shards(order: np.ndarray, sizes: list[int]) -> int:
    """The most shards that are started and not finished at any one point of ``order``."""
    shard_of = np.repeat(np.arange(len(sizes)), sizes)[order]
    opened = np.zeros(len(order) + 1, np.int64)
    for s in np.unique(shard_of):
        where = np.flatnonzero(shard_of == s)
        opened[where[0]] += 1
        opened[where[-1] + 1] -= 1
    return int(np.cumsum(opened).max()) if len(order) else 0


@PROPERTY
@given(
    sizes=st.lists(st.integers(0, 30), max_size=12),
    window=st.integers(1, 5),
    seed=seeds,
    epoch=epochs,
)
def test_shard_window_order_keeps_few_shards_open(
    sizes: list[int], window: int, seed: int, epoch: int
) -> None:
    order = shard_window_order(sizes, seed=seed, epoch=epoch, window_shards=window)
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(sum(sizes)))
    same = shard_window_order(sizes, seed=seed, epoch=epoch, window_shards=window)
    assert np.array_equal(order, same)
    # A reader needs at most `window` shards at once: no more are started and not finished.
    assert most_open_shards(order, sizes) <= window


def test_shard_window_order_starts_with_one_shard() -> None:
    sizes = [400] * 6
    order = shard_window_order(sizes, seed=1, epoch=0, window_shards=4)
    # The first stretch (a quarter of a shard, on average) comes from the first shard alone:
    # the first batch waits for one download.
    first = order[:60] // 400
    assert len(set(first.tolist())) == 1
    # Further on, the window mixes four shards.
    assert len(set((order[1200:1300] // 400).tolist())) == 4


@PROPERTY
@given(sizes=st.lists(st.integers(0, 30), max_size=12), window=st.integers(1, 5))
def test_shard_window_order_without_shuffle_is_the_identity(sizes: list[int], window: int) -> None:
    order = shard_window_order(sizes, seed=3, epoch=1, window_shards=window, shuffle=False)
    assert np.array_equal(order, np.arange(sum(sizes)))


def test_shard_window_order_shuffles_shards_and_samples() -> None:
    sizes = [50] * 8
    by_shard = [shard_window_order(sizes, seed=0, epoch=e, window_shards=1) for e in range(2)]
    first_shards = [order[::50] // 50 for order in by_shard]
    assert not np.array_equal(first_shards[0], first_shards[1])  # shard order changes
    assert not np.array_equal(by_shard[0][:50], np.sort(by_shard[0][:50]))  # samples shuffled
    mixed = shard_window_order(sizes, seed=0, epoch=0, window_shards=2)
    assert len(set((mixed[40:60] // 50).tolist())) == 2  # a window mixes two shards


# --- rank_share and resume -----------------------------------------------------------------


@PROPERTY
@given(data=st.data(), n=st.integers(0, 300), world=worlds, seed=seeds)
def test_rank_shares_partition_the_order(
    data: st.DataObject, n: int, world: int, seed: int
) -> None:
    order = epoch_order(n, seed=seed, epoch=0)
    start = data.draw(st.integers(0, n))
    per = per_rank_count(n, start=start, world_size=world)
    shares = [rank_share(order, start=start, rank=r, world_size=world) for r in range(world)]
    assert [len(share) for share in shares] == [per] * world
    union = np.concatenate(shares)
    assert len(np.unique(union)) == len(union)
    assert np.array_equal(np.sort(union), np.sort(order[start : start + world * per]))
    assert n - start - world * per == (n - start) % world


@PROPERTY
@given(data=st.data(), n=st.integers(0, 300), w1=worlds, w2=worlds, seed=seeds)
def test_resume_on_another_world_size_repeats_nothing(
    data: st.DataObject, n: int, w1: int, w2: int, seed: int
) -> None:
    order = epoch_order(n, seed=seed, epoch=7)
    start = data.draw(st.integers(0, n))
    k = data.draw(st.integers(0, per_rank_count(n, start=start, world_size=w1)))
    before = [rank_share(order, start=start, rank=r, world_size=w1)[:k] for r in range(w1)]
    resumed_at = consumed_after(start, k, w1)
    after = [rank_share(order, start=resumed_at, rank=r, world_size=w2) for r in range(w2)]
    read = np.concatenate([order[:start], *before, *after])
    assert len(np.unique(read)) == len(read)
    assert np.array_equal(np.sort(np.concatenate(before)), np.sort(order[start:resumed_at]))
    tail = (n - resumed_at) % w2
    assert set(order.tolist()) - set(read.tolist()) == set(order[n - tail :].tolist())


def test_rank_share_is_strided() -> None:
    order = np.arange(10, dtype=np.int64) * 10
    assert rank_share(order, start=1, rank=1, world_size=4).tolist() == [20, 60]


# --- batches and workers -------------------------------------------------------------------


@PROPERTY
@given(count=st.integers(0, 200), batch_size=st.integers(1, 40), drop_last=st.booleans())
def test_batch_slices_tile_the_share(count: int, batch_size: int, drop_last: bool) -> None:
    slices = batch_slices(count, batch_size, drop_last=drop_last)
    assert len(slices) == num_batches(count, batch_size, drop_last=drop_last)
    covered = [i for s in slices for i in range(count)[s]]
    assert covered == list(range(len(covered)))
    assert all(s.stop - s.start == batch_size for s in slices[:-1])
    if drop_last:
        assert len(covered) == count - count % batch_size
    else:
        assert len(covered) == count


@PROPERTY
@given(batches=st.integers(0, 100), workers=st.integers(1, 8))
def test_worker_batches_interleave_round_robin(batches: int, workers: int) -> None:
    owned = [worker_batches(batches, w, workers) for w in range(workers)]
    owner = {b: w for w, rng in enumerate(owned) for b in rng}
    assert sorted(owner) == list(range(batches))
    assert sum(len(r) for r in owned) == batches
    assert all(owner[b] == b % workers for b in owner)


# --- argument errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: epoch_order(-1, seed=0, epoch=0), "num_samples must be >= 0"),
        (lambda: epoch_order(3, seed=-1, epoch=0), "seed must be >= 0"),
        (lambda: epoch_order(3, seed=0, epoch=-2), "epoch must be >= 0"),
        (
            lambda: shard_window_order([1, -1], seed=0, epoch=0, window_shards=1),
            r"shard_sizes\[1\]",
        ),
        (lambda: shard_window_order([1], seed=0, epoch=0, window_shards=0), "window_shards"),
        (lambda: rank_share(np.arange(4), start=5, rank=0, world_size=1), "start .5. is past"),
        (lambda: rank_share(np.arange(4), start=0, rank=2, world_size=2), "rank must be < "),
        (lambda: rank_share(np.arange(4), start=0, rank=0, world_size=0), "world_size must be"),
        (
            lambda: rank_share(np.zeros((2, 2), dtype=np.int64), start=0, rank=0, world_size=1),
            "one-dimensional",
        ),
        (lambda: batch_slices(4, 0, drop_last=False), "batch_size must be >= 1"),
        (lambda: worker_batches(4, 3, 3), "worker must be < num_workers"),
        (lambda: consumed_after(0, -1, 2), "per_rank_consumed"),
    ],
)
def test_invalid_arguments_raise_value_error(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_non_integer_arguments_raise_type_error() -> None:
    with pytest.raises(TypeError, match="num_samples must be an integer, got float"):
        epoch_order(3.0, seed=0, epoch=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an integer, got bool"):
        epoch_order(3, seed=True, epoch=0)
    assert len(epoch_order(np.int32(3), seed=np.uint64(5), epoch=0)) == 3  # type: ignore[arg-type]


# --- resolve_rank_world --------------------------------------------------------------------


@pytest.fixture
def no_distributed(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RANK/WORLD_SIZE in the environment and no torch.distributed imported."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
    return monkeypatch


def fake_distributed(rank: int, world_size: int, *, initialized: bool) -> types.ModuleType:
    module = types.ModuleType("torch.distributed")
    module.is_available = lambda: True  # type: ignore[attr-defined]
    module.is_initialized = lambda: initialized  # type: ignore[attr-defined]
    module.get_rank = lambda: rank  # type: ignore[attr-defined]
    module.get_world_size = lambda: world_size  # type: ignore[attr-defined]
    return module


@pytest.mark.usefixtures("no_distributed")
def test_resolve_defaults_to_a_single_process() -> None:
    assert resolve_rank_world() == (0, 1)


def test_resolve_reads_the_environment(no_distributed: pytest.MonkeyPatch) -> None:
    no_distributed.setenv("RANK", "2")
    no_distributed.setenv("WORLD_SIZE", "4")
    assert resolve_rank_world() == (2, 4)
    assert resolve_rank_world(1, 3) == (1, 3)  # arguments win
    assert resolve_rank_world(rank=3) == (3, 4)  # each value from its own source


def test_resolve_prefers_initialised_torch_distributed(no_distributed: pytest.MonkeyPatch) -> None:
    no_distributed.setenv("RANK", "0")
    no_distributed.setenv("WORLD_SIZE", "2")
    no_distributed.setitem(
        sys.modules, "torch.distributed", fake_distributed(5, 8, initialized=True)
    )
    assert resolve_rank_world() == (5, 8)
    assert resolve_rank_world(world_size=6) == (5, 6)
    no_distributed.setitem(
        sys.modules, "torch.distributed", fake_distributed(5, 8, initialized=False)
    )
    assert resolve_rank_world() == (0, 2)


@pytest.mark.parametrize(
    ("env", "args", "match"),
    [
        ({"RANK": "4", "WORLD_SIZE": "4"}, {}, r"rank=4 \(from environment variable RANK\)"),
        ({"RANK": "x"}, {}, "environment variable RANK='x' is not an integer"),
        ({"WORLD_SIZE": "2"}, {"rank": -1}, r"rank=-1 \(from argument\).*WORLD_SIZE"),
        ({}, {"world_size": 0}, r"world_size=0 \(from argument\)"),
        ({}, {"rank": 1}, r"rank=1 \(from argument\) and world_size=1 \(from default\)"),
    ],
)
def test_resolve_rejects_inconsistent_values(
    no_distributed: pytest.MonkeyPatch, env: dict[str, str], args: dict[str, int], match: str
) -> None:
    for name, value in env.items():
        no_distributed.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        resolve_rank_world(**args)


def test_order_module_does_not_import_torch(tmp_path: Path) -> None:
    # Load the file on its own: the package __init__ may import torch for other modules.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('order', {order_module.__file__!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
