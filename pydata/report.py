"""What a dataset holds and whether it is intact: the summaries behind ``pydata inspect`` and
``pydata verify``.

:func:`dataset_report` reads the index and every shard header (cheap: one page per shard) and,
for compressed fields, the sizes the rows decode to; :func:`verify_dataset` reads every byte to
check the checksums (costly: the whole dataset). The report is a plain JSON-serialisable dict,
so ``--json`` output and the table that :func:`format_report` prints come from one source.
Decoded sizes come from the schema when a field's shape is fixed and from each row's blob header
(``pydata.blob_info``) when it varies, so no row is ever decompressed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pydata._core import blob_info
from pydata.errors import CorruptDataError, FormatError
from pydata.format.index import read_index
from pydata.format.reader import ShardReader
from pydata.format.schema import Field
from pydata.latent_stats import METADATA_KEY, LatentStats

__all__ = ["dataset_report", "format_report", "verify_dataset"]


def dataset_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of the dataset at ``path``.

    Returns:
        A JSON-serialisable dict: ``path``, ``samples``, ``shards``, ``bytes`` (on disk),
        ``overhead_bytes`` (shard headers and page padding), ``metadata`` and ``fields``: per
        field ``kind``, ``dtype``, ``shape`` (None when it varies), ``codec``, ``layout``,
        ``bytes`` (stored, offsets tables included) and, for compressed fields, ``raw_bytes``
        (decoded) and ``ratio`` (``raw_bytes / bytes``; None for other fields); ``latent_cache``:
        for a latent cache (:class:`pydata.LatentCache`), its stats with the ratios against raw
        float16 / float32 and the error against the encoder's output, else None.

    Raises:
        FileNotFoundError: No dataset at ``path``, or a shard is missing.
        pydata.FormatError: A malformed index.
        pydata.CorruptDataError: A truncated shard or damaged header or offsets table (named).
    """
    index = read_index(path)
    stored = dict.fromkeys(index.schema, 0)
    raw = dict.fromkeys(index.schema, 0)
    for entry in index.shards:
        reader = ShardReader(Path(path) / entry.file, entry, index.schema)
        try:
            for name, field in index.schema.items():
                stored[name] += reader.section(name).nbytes
                if field.codec != "raw":
                    raw[name] += _decoded_nbytes(reader, name, field)
        finally:
            reader.close()
    fields = {}
    for name, field in index.schema.items():
        compressed = field.codec != "raw"
        ratio = raw[name] / stored[name] if compressed and stored[name] else None
        fields[name] = {**field.to_json(), "bytes": stored[name],
                        "raw_bytes": raw[name] if compressed else None, "ratio": ratio}
    return {
        "path": str(path),
        "samples": index.samples,
        "shards": len(index.shards),
        "bytes": index.nbytes,
        "overhead_bytes": index.nbytes - sum(stored.values()),
        "fields": fields,
        "metadata": index.metadata,
        "latent_cache": None if METADATA_KEY not in index.metadata else
        LatentStats.from_json(index.metadata[METADATA_KEY], str(Path(path) / "index.json")).to_json(),
    }


def _decoded_nbytes(reader: ShardReader, name: str, field: Field) -> int:
    """Bytes the rows of a compressed field decode to, in one shard."""
    if field.shape is not None:
        return reader.samples * int(np.prod(field.shape, dtype=np.int64)) * field.storage_dtype.itemsize
    view = reader.indexed(name)
    assert view.payload is not None
    bounds = view.offsets.tolist()
    total = 0
    for row, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        try:
            total += int(blob_info(view.payload[start:stop])["raw_nbytes"])
        except CorruptDataError as exc:
            msg = f"shard '{reader.path}' field '{name}' row {row}: {exc}"
            raise CorruptDataError(msg) from exc
    return total


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`dataset_report` as a text table."""
    lines = [
        f"dataset   {report['path']}",
        f"samples   {report['samples']:,} in {report['shards']:,} shard(s), {_size(report['bytes'])} on disk "
        f"({_size(report['overhead_bytes'])} of headers and padding)",
        "",
    ]
    header = ("field", "kind", "dtype", "shape", "codec", "layout", "bytes", "decoded", "ratio")
    rows = [header]
    for name, f in report["fields"].items():
        shape = "varies" if f["shape"] is None and f["kind"] == "tensor" else (
            "-" if f["shape"] is None else "(" + ", ".join(str(d) for d in f["shape"]) + ")")
        rows.append((name, f["kind"], f["dtype"], shape, f["codec"], f["layout"], _size(f["bytes"]),
                     "-" if f["raw_bytes"] is None else _size(f["raw_bytes"]),
                     "-" if f["ratio"] is None else f"{f['ratio']:.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if report.get("latent_cache"):
        lines += ["", *_latent_lines(report["latent_cache"])]
    others = {k: v for k, v in report["metadata"].items() if k != METADATA_KEY}  # shown above
    if others:
        text = json.dumps(others)
        lines += ["", f"metadata  {text if len(text) <= 200 else text[:197] + '...'}"]
    return "\n".join(lines)


def _latent_lines(stats: dict[str, Any]) -> list[str]:
    """The latent cache's size against raw floats and its error, for :func:`format_report`."""
    return [
        f"latent cache  field '{stats['field']}' ({stats['dtype']}, {stats['codec']}): "
        f"{_size(stats['nbytes'])}, {stats['bytes_per_sample']:.1f} B/sample; "
        f"{stats['ratio_fp16']:.2f}x smaller than raw fp16, {stats['ratio_fp32']:.2f}x than fp32",
        f"              error vs the encoder's fp32 output: max abs {stats['max_abs']:.3g}, "
        f"relative L2 {stats['rel_l2']:.3g}",
        f"              encoder {stats['encoder']} on '{stats['input_field']}' of {stats['source']}",
    ]


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{nbytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # unreachable


def verify_dataset(path: str | os.PathLike[str], *, progress: bool | None = None) -> dict[str, Any]:
    """Opens every shard of the dataset at ``path`` and checks its CRC-32C against the index.

    Every shard is checked, so one run names all damaged shards.

    Args:
        path: The dataset directory.
        progress: Show a progress bar in bytes (default: when stderr is a terminal).

    Returns:
        ``{"shards", "samples", "bytes", "damaged"}``, where ``damaged`` lists
        ``{"file", "error"}`` for each missing, truncated or corrupt shard (empty when intact).

    Raises:
        FileNotFoundError: No dataset (no ``index.json``) at ``path``.
        pydata.FormatError: A malformed index.
    """
    index = read_index(path)
    damaged = []
    with tqdm(total=index.nbytes, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
              desc=f"verifying {Path(path).name}", disable=None if progress is None else not progress) as bar:
        for entry in index.shards:
            try:
                reader = ShardReader(Path(path) / entry.file, entry, index.schema)
                try:
                    reader.verify()
                finally:
                    reader.close()
            except (CorruptDataError, FormatError, OSError) as exc:
                error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                damaged.append({"file": entry.file, "error": error})
            bar.update(entry.nbytes)
    return {"shards": len(index.shards), "samples": index.samples, "bytes": index.nbytes, "damaged": damaged}
