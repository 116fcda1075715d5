"""pydata.Loader: content, order, exactly-once over ranks, kept batches, errors, stats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.errors import AuditError, CorruptDataError
from pydata.loader.transforms import RandomHorizontalFlip

SAMPLES = 301


def check_content(batch: dict[str, Any], reference: dict[str, np.ndarray]) -> None:
    ids = batch["label"].numpy()
    np.testing.assert_array_equal(batch["image"].numpy(), reference["image"][ids])
    np.testing.assert_array_equal(batch["latent"].numpy(), reference["latent"][ids])


@pytest.mark.parametrize("threads", [1, 2])
def test_epoch_delivers_every_sample_once_with_right_bytes(dataset: Any, reference: dict[str, np.ndarray],
                                                           threads: int) -> None:
    loader = pydata.Loader(dataset, 32, num_threads=threads, audit=True)
    batches = list(loader)
    assert len(batches) == len(pydata.Loader(dataset, 32)) == -(-SAMPLES // 32)
    for batch in batches:
        check_content(batch, reference)
        assert batch["image"].dtype == torch.uint8 and batch["latent"].dtype == torch.float16
    ids = np.concatenate([b["label"].numpy() for b in batches])
    assert sorted(ids.tolist()) == list(range(SAMPLES))
    assert ids.tolist() != list(range(SAMPLES))  # shuffled


def test_order_is_a_function_of_seed_and_epoch(dataset: Any) -> None:
    def epoch(seed: int, e: int, threads: int) -> list[int]:
        loader = pydata.Loader(dataset, 50, seed=seed, num_threads=threads)
        loader.set_epoch(e)
        return np.concatenate([b["label"].numpy() for b in loader]).tolist()

    assert epoch(1, 0, 1) == epoch(1, 0, 2)
    assert epoch(1, 0, 1) != epoch(1, 1, 1)
    assert epoch(1, 0, 1) != epoch(2, 0, 1)
    unshuffled = pydata.Loader(dataset, 50, shuffle=False)
    assert np.concatenate([b["label"].numpy() for b in unshuffled]).tolist() == list(range(SAMPLES))


def test_epochs_advance_by_themselves(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 100)
    first = [b["label"].tolist() for b in loader]
    second = [b["label"].tolist() for b in loader]
    assert loader.epoch == 2 and first != second


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("threads", [1, 2])
def test_ranks_share_an_epoch_exactly_once(dataset: Any, world_size: int, threads: int,
                                           assert_exactly_once: Callable[..., None]) -> None:
    assert_exactly_once(lambda rank, world: pydata.Loader(
        dataset, 16, rank=rank, world_size=world, num_threads=threads, audit=True), world_size)


def test_rank_from_environment(dataset: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    loader = pydata.Loader(dataset, 16)
    assert (loader.rank, loader.world_size) == (1, 2)
    assert sum(len(b["label"]) for b in loader) == SAMPLES // 2


def test_drop_last(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 100, drop_last=True, audit=True)
    assert [len(b["label"]) for b in loader] == [100, 100, 100]


def test_kept_batches_are_never_overwritten(dataset: Any, reference: dict[str, np.ndarray]) -> None:
    loader = pydata.Loader(dataset, 8, prefetch=2)
    kept = list(loader)  # keeps every batch alive: the loader must not recycle their buffers
    for batch in kept:
        check_content(batch, reference)
    views = [b["image"][1:3] for b in list(loader)]  # views of a batch keep its buffer too
    assert all(v.shape == (2, 3, 8, 8) for v in views)


def test_buffers_are_recycled_when_batches_are_dropped(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 8, prefetch=2, num_threads=2)
    for _ in loader:
        pass
    # in flight (at most prefetch) + the batch held by the loop + the one being handed over
    assert len(loader._pool) <= 2 + 2


def test_stopping_early_does_not_leak_buffers(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 8, prefetch=3, num_threads=2)
    for _ in range(20):
        iterator = iter(loader)
        next(iterator)
        iterator.close()
    assert len(loader._pool) <= 3 + 2


def test_fields_subset(dataset: Any) -> None:
    batch = next(iter(pydata.Loader(dataset, 4, fields=["label"])))
    assert list(batch) == ["label"]


def test_transforms_run_on_the_batch_reproducibly(dataset: Any) -> None:
    def run() -> list[torch.Tensor]:
        return [b["image"].clone() for b in pydata.Loader(
            dataset, 64, seed=3, transforms=[RandomHorizontalFlip("image", p=0.5)])]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


def test_stopping_early_leaves_no_thread_behind(dataset: Any) -> None:
    before = threading.active_count()
    loader = pydata.Loader(dataset, 4, prefetch=2)
    iterator = iter(loader)
    next(iterator)
    iterator.close()  # what `break` does once the generator is dropped
    assert threading.active_count() == before
    assert loader.state_dict()["consumed"] == 4


def test_stats_count_what_was_delivered(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 64)
    delivered = sum(len(b["label"]) for b in loader)
    stats = loader.stats()
    assert stats["samples"] == delivered == SAMPLES
    assert stats["batches"] == 5 and stats["bytes_per_s"] > 0
    assert 0 <= stats["wait_fraction"] <= 1 and 0 <= stats["producer_busy_fraction"] <= 1


def test_bad_arguments(dataset: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        pydata.Loader(dataset, 0)
    with pytest.raises(ValueError, match="on_corrupt"):
        pydata.Loader(dataset, 4, on_corrupt="ignore")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="nope"):
        pydata.Loader(dataset, 4, fields=["nope"])


# -- damaged data ------------------------------------------------------------------------------

def damage_row(path: Path, dataset: Any, sample: int) -> None:
    """Flips a byte inside the compressed blob of ``sample``'s latent."""
    reader = dataset.reader
    shard = int(np.searchsorted(reader.starts, sample, side="right")) - 1
    row = sample - int(reader.starts[shard])
    view = reader.shards[shard].indexed("latent")
    at = view.payload_offset + int(view.offsets[row]) + 10  # inside the blob header
    file = reader.shards[shard].path
    with open(file, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def damaged(tmp_path: Path, dataset_dir: Path) -> tuple[Any, int]:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(dataset_dir, copy)
    dataset = pydata.MemoryMappedDataset(copy)
    damage_row(copy, dataset, 123)
    return pydata.MemoryMappedDataset(copy), 123


def test_a_producer_error_reaches_the_consumer_naming_the_sample(damaged: tuple[Any, int]) -> None:
    dataset, bad = damaged
    with pytest.raises(CorruptDataError, match=f"sample {bad}") as info:
        for _ in pydata.Loader(dataset, 16, shuffle=False):
            pass
    assert "shard-" in str(info.value)


def test_skip_leaves_out_the_damaged_sample_deterministically(damaged: tuple[Any, int]) -> None:
    dataset, bad = damaged
    loader = pydata.Loader(dataset, 16, on_corrupt="skip", audit=True)
    ids = [i for b in loader for i in b["label"].tolist()]
    assert bad not in ids and len(ids) == len(set(ids)) == SAMPLES - 1
    assert loader.stats()["skipped"] == 1
    again = pydata.Loader(dataset, 16, on_corrupt="skip")
    assert [i for b in again for i in b["label"].tolist()] == ids


def test_skipped_samples_are_recorded_in_the_state(damaged: tuple[Any, int]) -> None:
    dataset, bad = damaged
    loader = pydata.Loader(dataset, 16, on_corrupt="skip", shuffle=False)
    for batch in loader:
        if bad < batch["label"][-1]:
            break
    assert loader.state_dict()["skipped"] == [bad]


class DuplicatingLoader(pydata.Loader):
    """A deliberately broken loader: batch 1 repeats batch 0's samples."""

    def _read(self, slot: Any, indices: np.ndarray) -> dict[str, Any]:
        if slot.number == 1:
            indices[:] = self._first
        elif slot.number == 0:
            self._first = indices.copy()
        return super()._read(slot, indices)


def test_audit_catches_a_broken_delivery(dataset: Any) -> None:
    with pytest.raises(AuditError, match="duplicates"):
        for _ in DuplicatingLoader(dataset, 16, shuffle=False, audit=True):
            pass


def test_plain_reads_give_the_same_batches_as_the_mapping(dataset_dir: Path) -> None:
    def epoch(io: str) -> list[dict[str, Any]]:
        return list(pydata.Loader(pydata.MemoryMappedDataset(dataset_dir, io=io), 32, seed=4))  # type: ignore[arg-type]

    for a, b in zip(epoch("mmap"), epoch("read"), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
