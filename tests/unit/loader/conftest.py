"""Fixtures for the Loader tests: a small dataset whose ``label`` is the sample id, and the
shared equivalence helpers (exactly-once over ranks, resume equivalence)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata

SAMPLES = 301  # not a multiple of any batch size or world size used


def reference(n: int = SAMPLES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "image": rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8),
        "label": np.arange(n, dtype=np.int64),
        "latent": rng.standard_normal((n, 4, 4, 4)).astype(np.float16),
    }


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loader") / "ds"
    schema = {
        "image": pydata.Field("uint8", (3, 8, 8)),
        "label": pydata.Field("int64", ()),
        "latent": pydata.Field("float16", (4, 4, 4), codec="lz4"),
    }
    with pydata.ShardWriter(path, schema, shard_bytes=40_000, progress=False) as writer:
        writer.write_batch(reference())
    return path


@pytest.fixture(name="reference")
def reference_fixture() -> dict[str, np.ndarray]:
    return reference()


@pytest.fixture
def dataset(dataset_dir: Path) -> Any:
    return pydata.MemoryMappedDataset(dataset_dir)


def labels_of(batches: list[dict[str, Any]]) -> list[list[int]]:
    return [b["label"].tolist() for b in batches]


@pytest.fixture
def assert_exactly_once() -> Callable[..., None]:
    """Every sample of the epoch is read by exactly one rank; ranks get equal counts."""

    def check(make_loader: Callable[[int, int], Any], world_size: int) -> None:
        per_rank = [
            np.concatenate([b["label"].numpy() for b in make_loader(rank, world_size)])
            for rank in range(world_size)
        ]
        assert len({len(p) for p in per_rank}) == 1, [len(p) for p in per_rank]
        everything = np.concatenate(per_rank)
        assert len(np.unique(everything)) == len(everything)
        assert len(everything) == (SAMPLES // world_size) * world_size

    return check


@pytest.fixture
def assert_resume_equivalent() -> Callable[..., None]:
    """After load_state_dict, the remaining batches equal the uninterrupted run's."""

    def check(make_loader: Callable[[], Any], midpoint: int,
              make_resumed: Callable[[], Any] | None = None) -> None:
        full = labels_of(list(make_loader()))
        first = make_loader()
        head = []
        for i, batch in enumerate(first):
            head.append(batch["label"].tolist())
            if i + 1 == midpoint:
                break
        state = first.state_dict()
        resumed = (make_resumed or make_loader)()
        resumed.load_state_dict(state)
        tail = labels_of(list(resumed))
        assert head + tail == full

    return check
