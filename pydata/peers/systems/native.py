"""pydata's own readers, as a user would set them up: ``MemoryMappedDataset`` through torch's
DataLoader (batched ``__getitems__``) and through :class:`pydata.Loader`, the same data stored
with ``int8+lz4`` latents, ``StreamingDataset`` from S3 (directly, through a DataLoader, and
through the Loader), and the DALI pipeline (:mod:`pydata.dali`, CPU) when it is installed.
Variable-length fields (the token workload) are read with ``ragged=True``, as the README
recommends: one ``pydata.Ragged`` per batch instead of a tensor per row.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import DataLoader

from pydata import decode_batch, encode
from pydata.datasets.mmap import MemoryMappedDataset
from pydata.datasets.streaming import StreamingDataset
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter
from pydata.loader.dataloader import create_dataloader
from pydata.loader.loader import Loader
from pydata.peers.systems.base import Batch, Reader, RunContext, System, iterate
from pydata.peers.workloads import U64, Source, batch_fingerprints

__all__ = ["DaliLoader", "MappedDataLoader", "MappedDataLoaderInt8", "MappedLoader", "MappedLoaderInt8",
           "StreamingDirect", "StreamingLoader"]

SHARD_BYTES = 64 << 20  # the shard size every system is given
_CHUNK = 4096


def _schema(source: Source, codec: str) -> dict[str, Field]:
    return {s.name: Field(s.dtype, s.shape, codec=codec if s.name == "latent" else "raw")
            for s in source.specs}


def write_dataset(source: Source, out: Path, codec: str = "raw") -> None:
    """The source as a pydata dataset (64 MiB shards), ``codec`` applied to latents."""
    with ShardWriter(out, _schema(source, codec), shard_bytes=SHARD_BYTES, progress=False) as writer:
        for start in range(0, source.count, _CHUNK):
            writer.write_batch(source.batch(np.arange(start, min(start + _CHUNK, source.count))))


def _lossy_expected(source: Source, codec: str) -> U64:
    """Fingerprints of the latents as ``codec`` decodes them: what a correct epoch delivers."""
    parts = []
    for start in range(0, source.count, _CHUNK):
        rows = source.rows("latent", np.arange(start, min(start + _CHUNK, source.count)))
        decoded = np.empty_like(rows)
        decode_batch([encode(np.ascontiguousarray(r), codec) for r in rows], decoded)
        parts.append(batch_fingerprints(source.specs, {"latent": decoded}))
    return np.concatenate(parts)


class _Epochs(Reader):
    """A reader over something that is iterated once per epoch and yields torch batches."""

    def __init__(self, loader: Iterable[Any], owner: Any = None) -> None:
        self.loader: Iterable[Any] | None = loader
        self.owner = owner  # the dataset whose maps and cache the reader holds

    def batches(self) -> Iterable[Batch]:
        assert self.loader is not None
        return iterate(self.loader)

    def close(self) -> None:
        cache = getattr(self.owner, "cache", None)
        if cache is not None:
            cache.close()
        self.loader = self.owner = None


class MappedDataLoader(System):
    """torch DataLoader over ``MemoryMappedDataset`` via ``pydata.create_dataloader``."""

    name = "pydata: DataLoader + MemoryMappedDataset"
    family = "pydata"
    codec: ClassVar[str] = "raw"

    def convert(self, source: Source, out: Path) -> None:
        write_dataset(source, out, self.codec)

    def expected(self, source: Source) -> U64:
        return source.fingerprints() if self.codec == "raw" else _lossy_expected(source, self.codec)

    def open(self, ctx: RunContext) -> Reader:
        ds = MemoryMappedDataset(ctx.data, ragged=True)
        return _Epochs(create_dataloader(ds, ctx.batch, shuffle=True, seed=ctx.seed, num_workers=ctx.variant), ds)


class MappedLoader(MappedDataLoader):
    """:class:`pydata.Loader` over ``MemoryMappedDataset``."""

    name = "pydata: Loader"
    variant_kind: ClassVar[str] = "threads"
    variants: ClassVar[tuple[int, ...]] = (1, 2)

    def open(self, ctx: RunContext) -> Reader:
        ds = MemoryMappedDataset(ctx.data, ragged=True)
        return _Epochs(Loader(ds, ctx.batch, shuffle=True, seed=ctx.seed, num_threads=ctx.variant), ds)


class MappedDataLoaderInt8(MappedDataLoader):
    """As :class:`MappedDataLoader`, latents stored ``int8+lz4`` (decoded to float16 on read)."""

    name = "pydata: DataLoader + MemoryMappedDataset, int8+lz4"
    codec: ClassVar[str] = "int8+lz4"
    workloads: ClassVar[tuple[str, ...]] = ("latents",)


class MappedLoaderInt8(MappedLoader):
    """As :class:`MappedLoader`, latents stored ``int8+lz4`` (decoded to float16 on read)."""

    name = "pydata: Loader, int8+lz4"
    codec: ClassVar[str] = "int8+lz4"
    workloads: ClassVar[tuple[str, ...]] = ("latents",)


class StreamingDirect(MappedDataLoader):
    """``StreamingDataset`` from S3 into an empty cache: iterated in the main process (0 workers)
    or through ``DataLoader(ds, batch_size=None, num_workers=2)``, as its docs show."""

    name = "pydata: StreamingDataset"
    settings: ClassVar[tuple[str, ...]] = ("s3",)

    def open(self, ctx: RunContext) -> Reader:
        ds = StreamingDataset(ctx.remote, local=ctx.cache, storage_options=ctx.storage_options, ragged=True,
                              batch_size=ctx.batch, seed=ctx.seed)
        if ctx.variant == 0:
            return _Epochs(ds, ds)
        return _Epochs(DataLoader(ds, batch_size=None, num_workers=ctx.variant), ds)


class StreamingLoader(StreamingDirect):
    """:class:`pydata.Loader` over ``StreamingDataset`` from S3 into an empty cache."""

    name = "pydata: Loader + StreamingDataset"
    variant_kind: ClassVar[str] = "threads"
    variants: ClassVar[tuple[int, ...]] = (1, 2)

    def open(self, ctx: RunContext) -> Reader:
        ds = StreamingDataset(ctx.remote, local=ctx.cache, storage_options=ctx.storage_options, ragged=True,
                              batch_size=ctx.batch, seed=ctx.seed)
        return _Epochs(Loader(ds, ctx.batch, shuffle=True, seed=ctx.seed, num_threads=ctx.variant), ds)


class DaliLoader(MappedDataLoader):
    """``pydata.dali.DALILoader`` (CPU pipeline, ``num_threads`` threads) over
    ``MemoryMappedDataset``; fixed-shape fields only, so not for token sequences."""

    name = "pydata: DALI pipeline (CPU)"
    variant_kind: ClassVar[str] = "threads"
    variants: ClassVar[tuple[int, ...]] = (1, 2)
    workloads: ClassVar[tuple[str, ...]] = ("images", "latents")

    def available(self) -> str:
        try:
            importlib.import_module("pydata.dali")
        except ImportError as exc:
            return f"pydata.dali cannot be imported (the dali extra): {exc}"
        return ""

    def open(self, ctx: RunContext) -> Reader:
        from pydata.dali import DALILoader

        ds = MemoryMappedDataset(ctx.data)
        loader = DALILoader(ds, ctx.batch, shuffle=True, seed=ctx.seed, device="cpu",
                            num_threads=ctx.variant)
        return _Epochs(loader, ds)

