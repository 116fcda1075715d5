"""WebDataset, as its docs set it up: tar shards written by ``wds.ShardWriter`` (64 MB each;
every field stored as ``.npy``, lossless), read by ``wds.WebDataset(urls, shardshuffle=...)``
with a shuffle buffer, ``decode()`` and ``batched()``, in a ``wds.WebLoader(batch_size=None)``.
For S3, the shard URLs are ``pipe:curl -s -f http://127.0.0.1:PORT/bucket/key`` (the docs' way
of reading an object store over http).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pydata.peers.systems.base import ALL_SETTINGS, Batch, Reader, RunContext, System
from pydata.peers.workloads import FieldSpec, Source, WORKLOADS

__all__ = ["WebDataset"]

SHUFFLE_BUFFER = 1000


def _collation(specs: Sequence[FieldSpec]) -> Any:
    def collate(samples: list[dict[str, Any]]) -> Batch:
        return {s.name: [x[f"{s.name}.npy"] for x in samples] if s.shape is None
                else np.stack([x[f"{s.name}.npy"] for x in samples]) for s in specs}

    return collate


class _Reader(Reader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def batches(self) -> Iterable[Batch]:
        return self.loader  # type: ignore[no-any-return]

    def close(self) -> None:
        self.loader = None


class WebDataset(System):
    """WebDataset (``webdataset``): tar shards, WebDataset pipeline, WebLoader."""

    name = "WebDataset"
    family = "peer"
    settings: ClassVar[tuple[str, ...]] = ALL_SETTINGS

    def available(self) -> str:
        try:
            importlib.import_module("webdataset")
        except Exception as exc:  # noqa: BLE001  (any import failure is the reason reported)
            return f"webdataset cannot be imported: {type(exc).__name__}: {exc}"
        return ""

    def convert(self, source: Source, out: Path) -> None:
        wds = importlib.import_module("webdataset")

        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=64_000_000, verbose=0) as sink:
            for start in range(0, source.count, 4096):
                batch = source.batch(np.arange(start, min(start + 4096, source.count)))
                for i in range(len(next(iter(batch.values())))):
                    sample = {f"{name}.npy": np.asarray(values[i]) for name, values in batch.items()}
                    sink.write({"__key__": f"{start + i:08d}", **sample})

    def open(self, ctx: RunContext) -> Reader:
        wds = importlib.import_module("webdataset")

        shards = sorted(p.name for p in ctx.data.glob("shard-*.tar"))
        if ctx.setting == "s3":
            bucket_key = ctx.remote.removeprefix("s3://")
            urls = [f"pipe:curl -s -f {ctx.endpoint}/{bucket_key}/{name}" for name in shards]
        else:
            urls = [str(ctx.data / name) for name in shards]
        dataset = (wds.WebDataset(urls, shardshuffle=len(urls), seed=ctx.seed, empty_check=False)
                   .shuffle(SHUFFLE_BUFFER).decode()
                   .batched(ctx.batch, collation_fn=_collation(WORKLOADS[ctx.workload]), partial=True))
        return _Reader(wds.WebLoader(dataset, batch_size=None, num_workers=ctx.variant))
