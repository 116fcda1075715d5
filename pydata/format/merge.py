"""merge_index: joins the indexes of independent writer partitions into one dataset.

A conversion split over n processes (``ShardWriter(..., partition=(k, n))``) leaves one
``index.part-k-of-n.json`` per finished partition. Merging is a pure function of those files: it
checks that all n partitions finished with the same schema, concatenates their shard lists in
partition order (so sample order is partition 0's samples, then partition 1's, ...), writes
``index.json`` atomically and only then removes the partition indexes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydata.errors import FormatError
from pydata.format.index import DatasetIndex
from pydata.format.writer import partition_index_name

__all__ = ["merge_index"]

_PART = re.compile(r"index\.part-(\d{5})-of-(\d{5})\.json$")


def merge_index(path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None) -> DatasetIndex:
    """Merges the partition indexes in ``path`` into its ``index.json``.

    Args:
        path: The dataset directory the partitions wrote to.
        metadata: The merged dataset's metadata (default: partition 0's).

    Returns:
        The merged index.

    Raises:
        FileNotFoundError: No partition indexes, or a partition has not finished (named).
        FormatError: Partitions disagree on n or on the schema, or two list the same shard.
    """
    directory = Path(path)
    parts: dict[int, int] = {}
    counts = set()
    for entry in directory.iterdir():
        match = _PART.match(entry.name)
        if match:
            parts[int(match.group(1))] = int(match.group(2))
            counts.add(int(match.group(2)))
    if not parts:
        msg = f"no partition indexes (index.part-K-of-N.json) in '{directory}'"
        raise FileNotFoundError(msg)
    if len(counts) != 1:
        msg = f"'{directory}': partition indexes disagree on the number of partitions: {sorted(counts)}"
        raise FormatError(msg)
    n = counts.pop()
    missing = [k for k in range(n) if k not in parts]
    if missing:
        names = ", ".join(partition_index_name(k, n) for k in missing[:5])
        msg = f"'{directory}': {len(missing)} of {n} partitions have not finished (missing {names})"
        raise FileNotFoundError(msg)
    files = [directory / partition_index_name(k, n) for k in range(n)]
    indexes = [DatasetIndex.parse(f.read_bytes(), str(f)) for f in files]
    for f, index in zip(files[1:], indexes[1:]):
        if index.schema != indexes[0].schema:
            msg = f"'{f}': schema {index.schema} differs from partition 0's {indexes[0].schema}"
            raise FormatError(msg)
    shards = tuple(s for index in indexes for s in index.shards)
    seen = set()
    for shard in shards:
        if shard.file in seen:
            msg = f"'{directory}': shard '{shard.file}' is listed by two partitions"
            raise FormatError(msg)
        seen.add(shard.file)
    merged = DatasetIndex(indexes[0].schema, shards, metadata if metadata is not None else indexes[0].metadata)
    merged.write(directory)
    for f in files:
        f.unlink()
    return merged
