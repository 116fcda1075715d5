"""Benchmarks of the compiled core, each against its baselines in the same run.

    python benchmarks/core.py [--quick]

- RingBuffer push+pop from Python vs ``queue.Queue`` and ``collections.deque``.
- Batch gather from a memory-mapped file vs numpy fancy indexing (``np.take``) and vs one
  large copy of the same number of bytes (the memcpy ceiling), rows of 256 B, 4 KiB, 64 KiB,
  with 1 and 2 threads. The file is made resident (every page touched) right before each
  timed repeat, because this VM pages out file pages that sit idle for ~30 s: these are hot
  figures. The cases are timed in interleaved rounds (best of 9 each), so a drift of the
  machine's bandwidth cannot masquerade as a difference between them.
- Codecs: encode/decode GB/s and compression ratio on smooth float16 latents and on noise,
  vs the python ``lz4.block`` module.

Prints markdown tables and writes ``results/core.json``.
"""

from __future__ import annotations

import argparse
import collections
import queue
import tempfile
from pathlib import Path
from typing import Any

import lz4.block
import numpy as np
from _common import markdown_table, measure, measure_interleaved, write_results

import pydata
from pydata.synthetic import noise_latents, smooth_latents

BATCH = 256


def bench_ring(ops: int) -> list[dict[str, Any]]:
    """push+pop pairs per second from one Python thread (each pair counts as 2 ops)."""

    def ring_try() -> None:
        ring = pydata.RingBuffer(1024)
        push, pop = ring.try_push, ring.try_pop
        for i in range(ops):
            push(i)
            pop()

    def ring_blocking() -> None:
        ring = pydata.RingBuffer(1024)
        push, pop = ring.push, ring.pop
        for i in range(ops):
            push(i)
            pop()

    def queue_blocking() -> None:
        q: queue.Queue[int] = queue.Queue(1024)
        put, get = q.put, q.get
        for i in range(ops):
            put(i)
            get()

    def queue_nowait() -> None:
        q: queue.Queue[int] = queue.Queue(1024)
        put, get = q.put_nowait, q.get_nowait
        for i in range(ops):
            put(i)
            get()

    def deque_ops() -> None:
        d: collections.deque[int] = collections.deque()
        put, get = d.append, d.popleft
        for i in range(ops):
            put(i)
            get()

    cases = {
        "RingBuffer try_push/try_pop": ring_try,
        "RingBuffer push/pop": ring_blocking,
        "queue.Queue put/get": queue_blocking,
        "queue.Queue put_nowait/get_nowait": queue_nowait,
        "collections.deque append/popleft": deque_ops,
    }
    rows = []
    for name, fn in cases.items():
        t = measure(fn, repeats=5)
        rows.append({"case": name, "ops_per_s": 2 * ops / t.best, "spread": t.spread})
    base = next(r["ops_per_s"] for r in rows if r["case"] == "queue.Queue put/get")
    for r in rows:
        r["vs_queue"] = r["ops_per_s"] / base
    return rows


def bench_gather(workdir: Path, source_mib: int, out_mib: int) -> list[dict[str, Any]]:
    """GB/s of gathered output for random batches of BATCH rows."""
    rng = np.random.default_rng(0)
    path = workdir / "rows.bin"
    with path.open("wb") as f:
        for _ in range(source_mib):
            f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    mapped = pydata.MappedFile(path)
    rows_out = []
    for row_bytes in (256, 4096, 65536):
        rows = mapped.size // row_bytes
        whole = mapped.view(0, rows * row_bytes, shape=(rows, row_bytes))
        # Four sections, as a dataset of four shards would have.
        cuts = np.linspace(0, rows, 5, dtype=np.int64)
        sections = pydata.FixedSections([whole[a:b] for a, b in zip(cuts[:-1], cuts[1:])], row_bytes)
        batches = max(1, (out_mib << 20) // (BATCH * row_bytes))
        order = [rng.integers(0, rows, BATCH) for _ in range(batches)]
        out = np.empty((BATCH, row_bytes), np.uint8)
        flat_out = out.reshape(-1)
        flat_src = whole.reshape(-1)
        starts = rng.integers(0, flat_src.size - flat_out.size, batches)
        epoch_bytes = batches * out.nbytes
        sections.gather(order[0], out)
        assert np.array_equal(out, whole[order[0]])  # correct before it is fast

        def hot() -> None:
            mapped.prefault()

        cases = {
            "memcpy (ceiling)": lambda: [np.copyto(flat_out, flat_src[s : s + flat_out.size]) for s in starts],
            "numpy np.take": lambda: [np.take(whole, idx, axis=0, out=out) for idx in order],
            "pydata gather, 1 thread": lambda: [sections.gather(idx, out, threads=1) for idx in order],
            "pydata gather, 2 threads": lambda: [sections.gather(idx, out, threads=2) for idx in order],
        }
        measured = measure_interleaved(cases, repeats=9, before=hot)
        ceiling = epoch_bytes / measured["memcpy (ceiling)"].best
        for name, t in measured.items():
            rate = epoch_bytes / t.best
            rows_out.append({"row_bytes": row_bytes, "case": name, "gbps": rate / 1e9,
                             "vs_memcpy": rate / ceiling, "spread": t.spread})
        del whole, sections, flat_src
    return rows_out


def bench_codecs(count: int) -> list[dict[str, Any]]:
    """Per-sample blobs (as shards store them); decode on one thread into a batch buffer."""
    rows = []
    for data_name, data in (("smooth", smooth_latents(count, 4, 32)), ("noise", noise_latents(count, 4, 32))):
        out = np.empty_like(data)
        for codec in pydata.CODECS:
            blobs: list[bytes] = []
            enc = measure(lambda: blobs.__setitem__(slice(None), [pydata.encode(s, codec) for s in data]), repeats=3)
            dec = measure(lambda: pydata.decode_batch(blobs, out, threads=1), repeats=5)
            err = pydata.quantization_error(data[: min(count, 64)], codec)
            rows.append({"data": data_name, "codec": codec, "ratio": data.nbytes / sum(map(len, blobs)),
                         "encode_gbps": data.nbytes / enc.best / 1e9, "decode_gbps": data.nbytes / dec.best / 1e9,
                         "max_abs": err["max_abs"], "rel_l2": err["rel_l2"]})
        raw = [s.tobytes() for s in data]
        packed: list[bytes] = []
        enc = measure(lambda: packed.__setitem__(slice(None), [lz4.block.compress(b, store_size=False) for b in raw]), repeats=3)
        size = raw[0].__len__()
        dec = measure(lambda: [lz4.block.decompress(b, uncompressed_size=size) for b in packed], repeats=5)
        rows.append({"data": data_name, "codec": "python lz4.block", "ratio": data.nbytes / sum(map(len, packed)),
                     "encode_gbps": data.nbytes / enc.best / 1e9, "decode_gbps": data.nbytes / dec.best / 1e9,
                     "max_abs": 0.0, "rel_l2": 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    ops, source_mib, out_mib, count = (20_000, 16, 4, 64) if args.quick else (300_000, 512, 64, 1024)

    ring = bench_ring(ops)
    print("\n## RingBuffer from Python (one thread, push+pop pairs)\n")
    print(markdown_table(["case", "M ops/s", "x queue.Queue"],
                         [[r["case"], r["ops_per_s"] / 1e6, r["vs_queue"]] for r in ring]))

    with tempfile.TemporaryDirectory(prefix="pydata-bench-") as tmp:
        gather = bench_gather(Path(tmp), source_mib, out_mib)
    print(f"\n## Batch gather, batches of {BATCH} random rows from a {source_mib} MiB mapped file (hot)\n")
    print(markdown_table(["row bytes", "case", "GB/s", "x memcpy"],
                         [[r["row_bytes"], r["case"], r["gbps"], r["vs_memcpy"]] for r in gather]))

    codecs = bench_codecs(count)
    print(f"\n## Codecs, {count} latents of 4x32x32 float16 (8 KiB each), decode on 1 thread\n")
    print(markdown_table(["data", "codec", "ratio", "encode GB/s", "decode GB/s", "rel L2 error"],
                         [[r["data"], r["codec"], r["ratio"], r["encode_gbps"], r["decode_gbps"], r["rel_l2"]] for r in codecs]))

    targets = {
        "gather >= 4 KiB rows at >= 80% of memcpy (best thread count)": all(
            max(r["vs_memcpy"] for r in gather if r["row_bytes"] == size and r["case"].startswith("pydata")) >= 0.8
            for size in (4096, 65536)),
        "RingBuffer push+pop >= 5x queue.Queue": next(r for r in ring if r["case"] == "RingBuffer push/pop")["vs_queue"] >= 5,
        "int8+lz4 decode >= 1.5 GB/s per thread (smooth latents)": next(
            r for r in codecs if r["codec"] == "int8+lz4" and r["data"] == "smooth")["decode_gbps"] >= 1.5,
    }
    print("\n## Targets\n")
    for name, met in targets.items():
        print(f"- [{'x' if met else ' '}] {name}")
    path = write_results("core", {"quick": args.quick, "ring_buffer": ring, "gather": gather,
                                  "codecs": codecs, "targets": targets})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
