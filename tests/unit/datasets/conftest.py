"""Fixtures of the dataset tests: a small remote dataset on the local filesystem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pydata
from pydata.format.index import DatasetIndex, read_index


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, DatasetIndex]:
    """A dataset of 3 shards of 4 random rows of 3,000 bytes, at ``tmp_path / "remote"``."""
    path = tmp_path / "remote"
    data = np.random.default_rng(0).integers(0, 256, (12, 3000), dtype=np.uint8)
    with pydata.ShardWriter(path, {"x": pydata.Field("uint8", (3000,))}, shard_bytes=4 * 3000,
                            progress=False) as writer:
        writer.write_batch({"x": data})
    index = read_index(path)
    assert len(index.shards) == 3
    return path, index
