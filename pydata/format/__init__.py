"""The on-disk dataset format: schema, shards, index, writer, readers (spec: docs/format.md)."""

from __future__ import annotations

from pydata.format.batch_reader import BatchReader
from pydata.format.index import FORMAT_NAME, FORMAT_VERSION, INDEX_NAME, DatasetIndex, ShardEntry, read_index
from pydata.format.merge import merge_index
from pydata.format.reader import IO, ShardReader
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "IO",
    "BatchReader",
    "DatasetIndex",
    "Field",
    "ShardEntry",
    "ShardReader",
    "ShardWriter",
    "merge_index",
    "read_index",
]
