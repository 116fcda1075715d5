"""LitData, as its docs set it up: ``litdata.optimize`` into 64 MB chunks, then
``StreamingDataset(input_dir)`` in a ``StreamingDataLoader`` (for S3, ``input_dir="s3://..."``
with an empty ``cache_dir`` and the endpoint in ``storage_options``).

LitData downloads S3 chunks with obstore, whose client refuses plain-http endpoints unless its
client options allow http; the local S3 server speaks plain http on 127.0.0.1, so the S3 runs
add ``allow_http`` to LitData's obstore client options (a module constant), and say so.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from pydata.peers.systems.base import ALL_SETTINGS, Batch, Reader, RunContext, System, iterate
from pydata.peers.workloads import Source, WORKLOADS

__all__ = ["LitData"]

ALLOW_HTTP = ("litdata's obstore client refuses plain-http S3 endpoints: its client options "
              "(litdata.streaming.downloader._OBSTORE_CLIENT_OPTIONS) got allow_http=true for the local server")


def _sample(root: str, workload: str, index: int) -> dict[str, Any]:
    """One source sample (module level: optimize pickles it to its worker processes)."""
    return {k: v[0] for k, v in Source(workload, Path(root)).batch([index]).items()}


class _Reader(Reader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def batches(self) -> Iterable[Batch]:
        return iterate(self.loader)

    def close(self) -> None:
        self.loader = None


class LitData(System):
    """LitData (``litdata``): optimize, StreamingDataset, StreamingDataLoader."""

    name = "LitData"
    family = "peer"
    settings: ClassVar[tuple[str, ...]] = ALL_SETTINGS

    def available(self) -> str:
        try:
            importlib.import_module("litdata")
        except Exception as exc:  # noqa: BLE001  (any import failure is the reason reported)
            return f"litdata cannot be imported: {type(exc).__name__}: {exc}"
        return ""

    def convert(self, source: Source, out: Path) -> None:
        litdata = importlib.import_module("litdata")

        litdata.optimize(fn=functools.partial(_sample, str(source.root), source.workload),
                         inputs=list(range(source.count)), output_dir=str(out), chunk_bytes="64MB",
                         num_workers=2, verbose=False)

    def open(self, ctx: RunContext) -> Reader:
        litdata = importlib.import_module("litdata")

        from pydata.peers.systems.baselines import collate_for

        if ctx.setting == "s3":
            downloader = importlib.import_module("litdata.streaming.downloader")
            downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # noqa: SLF001  (see the module docstring)
            ctx.notes.append(ALLOW_HTTP)
            options = {"endpoint_url": ctx.endpoint, "aws_access_key_id": "testing",
                       "aws_secret_access_key": "testing", "region_name": "us-east-1"}
            dataset = litdata.StreamingDataset(ctx.remote, cache_dir=str(ctx.cache), shuffle=True,
                                               seed=ctx.seed, storage_options=options)
        else:
            dataset = litdata.StreamingDataset(str(ctx.data), shuffle=True, seed=ctx.seed)
        loader = litdata.StreamingDataLoader(dataset, batch_size=ctx.batch, num_workers=ctx.variant,
                                             collate_fn=collate_for(WORKLOADS[ctx.workload]))
        return _Reader(loader)
