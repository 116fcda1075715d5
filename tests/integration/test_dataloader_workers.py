"""pydata.create_dataloader with worker processes over MemoryMappedDataset: every sample exactly
once per epoch and byte-identical, a seeded order, tuned defaults, and a worker's private memory
that does not grow with the dataset (the shards are shared through the page cache)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.datasets.batch import SampleBatch
from pydata.loader.dataloader import default_num_workers

pytestmark = [
    pytest.mark.integration,
    # A one-core CI machine makes torch warn that 2 workers exceed its suggestion.
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    # Python >= 3.12 warns when a multi-threaded process forks; the workers are forked on purpose.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

SAMPLES = 1000


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A dataset of several shards with fixed, variable-shape and str fields; label = sample id."""
    rng = np.random.default_rng(0)
    data = {
        "image": rng.integers(0, 256, (SAMPLES, 3, 8, 8), dtype=np.uint8),
        "label": np.arange(SAMPLES, dtype=np.int64),
        "tokens": [rng.integers(0, 1000, rng.integers(1, 20), dtype=np.int32) for _ in range(SAMPLES)],
        "name": [f"sample-{i}" for i in range(SAMPLES)],
    }
    path = tmp_path_factory.mktemp("workers") / "ds"
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ()),
              "tokens": pydata.Field("int32", codec="lz4"), "name": pydata.Field("str")}
    with pydata.ShardWriter(path, schema, shard_bytes=64 << 10, progress=False) as writer:
        writer.write_batch(data)
    return path, data


def _epoch(loader: torch.utils.data.DataLoader[Any]) -> list[dict[str, Any]]:
    return list(loader)


def test_each_sample_exactly_once_per_epoch_and_byte_identical(source: tuple[Path, dict[str, Any]]) -> None:
    path, data = source
    dataset = pydata.MemoryMappedDataset(path)
    assert len(dataset.index.shards) > 2
    loader = pydata.create_dataloader(dataset, 64, num_workers=2, seed=3)
    for _ in range(2):  # persistent workers serve the second epoch too
        batches = _epoch(loader)
        labels = torch.cat([b["label"] for b in batches]).numpy()
        assert sorted(labels.tolist()) == list(range(SAMPLES))
        for batch in batches:
            ids = batch["label"].numpy()
            assert batch["image"].dtype == torch.uint8
            np.testing.assert_array_equal(batch["image"].numpy(), data["image"][ids])
            assert batch["name"] == [data["name"][i] for i in ids]
            for tokens, i in zip(batch["tokens"], ids):
                np.testing.assert_array_equal(tokens.numpy(), data["tokens"][i])


def _order(path: Path, seed: int, epochs: int = 1) -> list[list[int]]:
    loader = pydata.create_dataloader(pydata.MemoryMappedDataset(path, ["label"]), 50,
                                      num_workers=2, seed=seed)
    return [torch.cat([b["label"] for b in loader]).tolist() for _ in range(epochs)]


def test_shuffle_is_determined_by_the_seed(source: tuple[Path, dict[str, Any]]) -> None:
    path, _ = source
    first, second = _order(path, seed=7, epochs=2)
    assert first != list(range(SAMPLES))
    assert first != second  # a new order every epoch...
    assert _order(path, seed=7, epochs=2) == [first, second]  # ...the same in every run
    assert _order(path, seed=8) != [first]


def test_a_sampler_decides_the_order(source: tuple[Path, dict[str, Any]]) -> None:
    path, _ = source
    order = list(range(SAMPLES - 1, -1, -1))
    loader = pydata.create_dataloader(pydata.MemoryMappedDataset(path, ["label"]), 100,
                                      num_workers=0, sampler=order)  # type: ignore[arg-type]
    assert torch.cat([b["label"] for b in loader]).tolist() == order


def test_defaults(source: tuple[Path, dict[str, Any]]) -> None:
    dataset = pydata.MemoryMappedDataset(source[0])
    loader = pydata.create_dataloader(dataset, 32)
    workers = default_num_workers()
    assert loader.num_workers == workers
    assert loader.persistent_workers == (workers > 0)
    assert loader.prefetch_factor == (4 if workers else None)
    assert loader.pin_memory == torch.cuda.is_available()
    assert loader.collate_fn is pydata.collate
    assert loader.batch_size == 32
    if workers and sys.platform.startswith("linux"):
        assert loader.multiprocessing_context.get_start_method() == "fork"

    inline = pydata.create_dataloader(dataset, 32, num_workers=0, shuffle=False)
    assert (inline.persistent_workers, inline.prefetch_factor) == (False, None)
    batch = next(iter(inline))
    assert batch["label"].tolist() == list(range(32))
    spawned = pydata.create_dataloader(dataset, 8, num_workers=1, multiprocessing_context="spawn")
    assert spawned.multiprocessing_context.get_start_method() == "spawn"


def test_bad_arguments_are_rejected(source: tuple[Path, dict[str, Any]]) -> None:
    dataset = pydata.MemoryMappedDataset(source[0])
    with pytest.raises(ValueError, match="batch_size"):
        pydata.create_dataloader(dataset, 0)
    with pytest.raises(ValueError, match="num_workers"):
        pydata.create_dataloader(dataset, 8, num_workers=-1)


# -- memory ------------------------------------------------------------------------------------

IMAGE_SHAPE = (3, 64, 64)  # 12 KiB per sample
MIB = 1 << 20


def _smaps() -> dict[str, int]:
    """This process's /proc/self/smaps_rollup, in bytes."""
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        out[key] = int(value.split()[0]) * 1024
    return out


class MemoryProbe(torch.utils.data.Dataset[dict[str, Any]]):
    """Reads a batch through the wrapped dataset, then reports the worker's own memory with it:
    USS (Private_Clean + Private_Dirty) and PSS, measured after the read."""

    def __init__(self, dataset: pydata.MemoryMappedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> SampleBatch:
        batch = dict(self.dataset.__getitems__(indices).batch)
        smaps = _smaps()
        info = torch.utils.data.get_worker_info()
        n = len(indices)
        batch["uss"] = torch.full((n,), smaps["Private_Clean"] + smaps["Private_Dirty"])
        batch["pss"] = torch.full((n,), smaps["Pss"])
        batch["worker"] = torch.full((n,), -1 if info is None else info.id)
        return SampleBatch(batch, n)


def _write_images(path: Path, nbytes: int) -> None:
    row = int(np.prod(IMAGE_SHAPE))
    count = nbytes // row
    schema = {"image": pydata.Field("uint8", IMAGE_SHAPE), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, progress=False) as writer:
        for start in range(0, count, 1024):
            ids = np.arange(start, min(start + 1024, count))
            pattern = np.arange(row, dtype=np.uint8)[None, :] + (ids % 256).astype(np.uint8)[:, None]
            writer.write_batch({"image": pattern.reshape(len(ids), *IMAGE_SHAPE), "label": ids})


def _worker_memory(path: Path) -> dict[int, tuple[int, int]]:
    """Each worker's (USS, PSS) after it has read its share of one full epoch."""
    loader = pydata.create_dataloader(MemoryProbe(pydata.MemoryMappedDataset(path, ["image"])),
                                      256, num_workers=2, seed=0)
    last: dict[int, tuple[int, int]] = {}
    samples = 0
    for batch in loader:
        samples += len(batch["worker"])
        last[int(batch["worker"][0])] = (int(batch["uss"][0]), int(batch["pss"][0]))
    assert samples == len(loader.dataset)  # type: ignore[arg-type]
    del loader  # stops the persistent workers
    return last


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux smaps_rollup")
def test_worker_memory_does_not_grow_with_dataset_size(tmp_path: Path) -> None:
    sizes = (32 * MIB, 256 * MIB)
    figures = {}
    for size in sizes:
        _write_images(tmp_path / f"ds{size // MIB}", size)
        figures[size] = _worker_memory(tmp_path / f"ds{size // MIB}")
        assert sorted(figures[size]) == [0, 1]
    for size, workers in figures.items():
        for worker, (uss, pss) in sorted(workers.items()):
            print(f"dataset {size // MIB:4d} MiB  worker {worker}: USS {uss / MIB:7.1f} MiB  PSS {pss / MIB:7.1f} MiB")
    small, large = (np.mean([uss for uss, _ in figures[s].values()]) for s in sizes)
    growth = large - small
    print(f"USS growth per worker {growth / MIB:.1f} MiB for {(sizes[1] - sizes[0]) / MIB:.0f} MiB more data")
    assert growth < 0.1 * (sizes[1] - sizes[0]), (
        f"a worker's USS grew by {growth / MIB:.1f} MiB when the dataset grew by "
        f"{(sizes[1] - sizes[0]) / MIB:.0f} MiB: {figures}")


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_ranks_times_workers_read_each_sample_once(source: tuple[Path, dict[str, Any]],
                                                   world_size: int, workers: int) -> None:
    path, _ = source
    per_rank = []
    for rank in range(world_size):
        loader = pydata.create_dataloader(pydata.MemoryMappedDataset(path, ["label"]), 64, seed=1,
                                          num_workers=workers, rank=rank, world_size=world_size,
                                          persistent_workers=False)
        per_rank.append(torch.cat([b["label"] for b in loader]).tolist())
    assert len({len(p) for p in per_rank}) == 1  # equal shares: DDP never waits on a rank
    everything = [i for p in per_rank for i in p]
    assert len(everything) == len(set(everything)) == (SAMPLES // world_size) * world_size
    # the same shares as pydata.Loader's, so switching loaders does not change what a rank sees
    loader_share = [i for b in pydata.Loader(pydata.MemoryMappedDataset(path, ["label"]), 64, seed=1,
                                               rank=world_size - 1, world_size=world_size)
                    for i in b["label"].tolist()]
    assert loader_share == per_rank[-1]
