"""``index.json``: the one file that says a dataset exists and what it holds.

It names the format and version, the schema, every shard (file name, samples, bytes, CRC-32C)
and free-form user metadata. Writers write it last, atomically, so its presence means that every
shard it lists is complete; readers check each shard against it. JSON rather than a binary
header: it is small (one entry per shard), diffable and readable by any tool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydata.errors import FormatError
from pydata.format.atomic import atomic_write, fsync_directory
from pydata.format.schema import Field, schema_from_json, schema_to_json

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "INDEX_NAME", "DatasetIndex", "ShardEntry", "read_index"]

FORMAT_NAME = "pydata-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"


@dataclass(frozen=True)
class ShardEntry:
    """One shard as listed in the index.

    Attributes:
        file: File name relative to the dataset directory.
        samples: Samples in the shard.
        nbytes: Exact file size in bytes.
        crc32c: CRC-32C of the whole file (``pydata.checksum``).
    """

    file: str
    samples: int
    nbytes: int
    crc32c: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "samples": self.samples, "bytes": self.nbytes, "crc32c": self.crc32c}


@dataclass(frozen=True)
class DatasetIndex:
    """The parsed ``index.json`` of a dataset.

    Attributes:
        schema: Field name -> Field, in storage order.
        shards: The shards in sample order: shard 0 holds samples ``0 .. shards[0].samples - 1``.
        metadata: The user's metadata, as given to the writer.
    """

    schema: dict[str, Field]
    shards: tuple[ShardEntry, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        """Total samples over all shards."""
        return sum(s.samples for s in self.shards)

    @property
    def nbytes(self) -> int:
        """Total bytes over all shards."""
        return sum(s.nbytes for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "samples": self.samples,
            "schema": schema_to_json(self.schema),
            "shards": [s.to_json() for s in self.shards],
            "metadata": self.metadata,
        }

    def write(self, directory: Path, name: str = INDEX_NAME) -> Path:
        """Writes the index atomically into ``directory`` and returns its path."""
        path = Path(directory) / name
        with atomic_write(path) as f:
            f.write(json.dumps(self.to_json(), indent=1).encode() + b"\n")
        fsync_directory(path.parent)
        return path

    @staticmethod
    def parse(text: str | bytes, source: str) -> DatasetIndex:
        """Parses an index's text; every error names ``source``.

        Raises:
            FormatError: Not JSON, another format, an unknown version, or a missing or
                malformed key (named), or a sample total that disagrees with the shards.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{source}: not valid JSON ({exc})"
            raise FormatError(msg) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            msg = f"{source}: not a pydata index (expected \"format\": \"{FORMAT_NAME}\")"
            raise FormatError(msg)
        if data.get("version") != FORMAT_VERSION:
            msg = f"{source}: format version {data.get('version')!r}, this pydata reads version {FORMAT_VERSION}"
            raise FormatError(msg)
        schema = schema_from_json(data.get("schema"), source)
        shards = tuple(_parse_shard(entry, i, source) for i, entry in enumerate(_list(data, "shards", source)))
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            msg = f"{source}: 'metadata' must be an object"
            raise FormatError(msg)
        index = DatasetIndex(schema, shards, metadata)
        if data.get("samples") != index.samples:
            msg = f"{source}: 'samples' is {data.get('samples')!r} but the shards hold {index.samples}"
            raise FormatError(msg)
        return index


def _list(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        msg = f"{source}: '{key}' must be a list"
        raise FormatError(msg)
    return value


def _parse_shard(entry: Any, position: int, source: str) -> ShardEntry:
    keys = {"file": str, "samples": int, "bytes": int, "crc32c": int}
    if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in keys.items()):
        msg = f"{source}: shards[{position}] must be an object with {', '.join(keys)} ({entry!r})"
        raise FormatError(msg)
    name = entry["file"]
    if not name or os.path.basename(name) != name or name.startswith("."):
        msg = f"{source}: shards[{position}]: file {name!r} must be a plain file name in the dataset"
        raise FormatError(msg)
    return ShardEntry(name, entry["samples"], entry["bytes"], entry["crc32c"])


def read_index(directory: str | os.PathLike[str]) -> DatasetIndex:
    """Reads ``index.json`` from a dataset directory.

    Raises:
        FileNotFoundError: No index (the message says the dataset may be incomplete).
        FormatError: As for :meth:`DatasetIndex.parse`.
    """
    path = Path(directory) / INDEX_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        msg = (f"no dataset at '{directory}': '{path}' is missing (a dataset whose writer did not "
               "finish has no index)")
        raise FileNotFoundError(exc.errno, msg, str(path)) from exc
    return DatasetIndex.parse(text, str(path))
