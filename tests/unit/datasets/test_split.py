"""split_dataset / DatasetSplit: a seeded, disjoint, covering split that Loader and DataLoader
read as a dataset of its own (ranks, resume and the exactly-once audit in split numbering)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata.datasets.split import DatasetSplit, split_dataset

SAMPLES = 203


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("split") / "ds"
    rng = np.random.default_rng(3)
    schema = {"image": pydata.Field("uint8", (3, 4, 4)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=4_000, progress=False) as writer:
        writer.write_batch({"image": rng.integers(0, 256, (SAMPLES, 3, 4, 4), dtype=np.uint8),
                            "label": np.arange(SAMPLES, dtype=np.int64)})  # label = sample id
    return path


@pytest.fixture
def dataset(dataset_dir: Path) -> Any:
    return pydata.MemoryMappedDataset(dataset_dir)


def _ids(batches: Any) -> list[int]:
    return [i for b in batches for i in b["label"].tolist()]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_the_sides_are_disjoint_and_cover_everything(dataset: Any, fraction: float) -> None:
    train, val = split_dataset(dataset, fraction, seed=4)
    assert len(val) == round(SAMPLES * fraction) and len(train) + len(val) == SAMPLES
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    assert sorted([*train.indices.tolist(), *val.indices.tolist()]) == list(range(SAMPLES))


def test_the_seed_decides_the_split(dataset: Any) -> None:
    a, b, c = (split_dataset(dataset, 0.2, seed=s)[1].indices.tolist() for s in (1, 1, 2))
    assert a == b
    assert a != c
    assert a != list(range(len(a)))  # drawn, not the first samples


def test_reads_go_to_the_parents_samples(dataset: Any) -> None:
    train, _ = split_dataset(dataset, 0.3, seed=0)
    picked = [0, 5, len(train) - 1, 5]
    parent = train.indices[picked]
    reader = train.batch_reader()
    got = reader.read_batch(picked)
    want = dataset.reader.read_batch(parent)
    np.testing.assert_array_equal(got["image"], want["image"])
    assert got["label"].tolist() == parent.tolist()
    assert int(train[3]["label"]) == int(train.indices[3])
    assert [int(s["label"]) for s in train.__getitems__([2, 1])] == train.indices[[2, 1]].tolist()
    with pytest.raises(IndexError, match=f"sample index {len(train)} is out of range for a split of {len(train)}"):
        reader.read_batch([len(train)])


def test_the_order_is_the_parents_order_restricted(dataset: Any) -> None:
    train, _ = split_dataset(dataset, 0.3, seed=0)
    assert train.epoch_order(0, shuffle=False).tolist() == list(range(len(train)))
    order = train.indices[train.epoch_order(2, seed=7)].tolist()
    parent = dataset.epoch_order(2, seed=7).tolist()
    assert order == [i for i in parent if i in set(train.indices.tolist())]
    assert order != sorted(order)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_a_loader_reads_each_split_sample_once_per_epoch(dataset: Any, world_size: int) -> None:
    train, val = split_dataset(dataset, 0.25, seed=9)
    for part in (train, val):
        per_rank = []
        for rank in range(world_size):
            loader = pydata.Loader(part, 16, seed=3, num_threads=2, rank=rank, world_size=world_size,
                                   audit=True)
            per_rank.append([_ids(loader), _ids(loader)])  # two epochs, each audited
        for epoch in range(2):
            ids = [p[epoch] for p in per_rank]
            assert len({len(i) for i in ids}) == 1
            everything = [i for rank_ids in ids for i in rank_ids]
            assert len(everything) == len(set(everything)) == len(part) - len(part) % world_size
            assert set(everything) <= set(part.indices.tolist())
        assert per_rank[0][0] != per_rank[0][1]  # a new order each epoch


def test_a_loader_on_a_split_resumes_exactly(dataset: Any) -> None:
    def make() -> Any:
        train, _ = split_dataset(dataset, 0.2, seed=5)
        return pydata.Loader(train, 10, seed=2, num_threads=1)

    full = _ids(make())
    first = make()
    iterator = iter(first)
    head = _ids(next(iterator) for _ in range(6))
    iterator.close()
    state = first.state_dict()
    assert state["num_samples"] == SAMPLES - round(SAMPLES * 0.2)
    resumed = make()
    resumed.load_state_dict(state)
    assert head + _ids(resumed) == full
    assert len(full) == len(set(full)) == state["num_samples"]


def test_a_torch_dataloader_reads_a_split(dataset: Any) -> None:
    _, val = split_dataset(dataset, 0.2, seed=5)
    loader = pydata.create_dataloader(val, 8, num_workers=0, seed=1)
    assert sorted(_ids(loader)) == val.indices.tolist()


def test_bad_splits_are_refused(dataset: Any) -> None:
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"val_fraction must lie in \(0, 1\)"):
            split_dataset(dataset, fraction)
    with pytest.raises(ValueError, match="leaves no validation samples"):
        split_dataset(dataset, 0.001)
    with pytest.raises(ValueError, match="leaves no training samples"):
        split_dataset(dataset, 0.999)
    with pytest.raises(IndexError, match=f"split index {SAMPLES} is out of range for a dataset of {SAMPLES}"):
        DatasetSplit(dataset, [0, SAMPLES])
    with pytest.raises(ValueError, match="7 is repeated"):
        DatasetSplit(dataset, [7, 1, 7])
