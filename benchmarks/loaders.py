"""Epoch throughput of pydata's loaders against the usual ways of feeding PyTorch, in one run.

    python benchmarks/loaders.py [--quick] [--samples N] [--repeats N] [--workdir DIR]

Every case reads the same synthetic samples (``pydata.synthetic``: a uint8 3x64x64 image, an
int64 label and a float16 4x32x32 latent, 20,488 bytes) for one shuffled epoch in batches of 256:

1. torch DataLoader over one ``.pt`` file per sample, ``torch.load`` per sample (the common baseline);
2. torch DataLoader over one ``.npy`` file per sample (a structured record: one file, one read);
3. numpy memmap: one ``.npy`` per field for the whole dataset, ``np.load(mmap_mode="r")``, and
   per batch ``arr[sorted batch indices]`` per field in the main process (the strongest naive
   baseline); also with 2 threads, each ``np.take``-ing half of every batch;
4. torch DataLoader over ``pydata.MemoryMappedDataset`` (``pydata.create_dataloader``);
5. ``pydata.Loader``.

DataLoaders run with 0 and 2 workers (persistent: worker start-up is not timed), Loader with 1
and 2 threads. Cases 4 and 5 run again on a copy whose latents are stored ``int8+lz4`` (decoded
to float16 on read). The ceilings move the same bytes per batch: a one-thread memcpy of
contiguous rows, a one-thread ``np.take`` of the same rows into a preallocated batch, and two
two-thread memcpys: numpy ``copyto`` of half of every batch in each of two threads (numpy
releases the GIL for large copies) and ``pydata.gather_rows(threads=2)`` of contiguous rows.
The "x memcpy ceiling" column divides by the fastest of the three memcpy rows. A last row,
"bound", copies exactly the shuffled batches' rows with ``pydata.gather_rows(threads=2)`` and no
loader around it: the cost of the random access pattern itself, which no loader can beat.

Hot figures: right before each timed epoch, every case's files are read in full, or, for the
memory-mapped cases, every page is touched through the case's own mapping (page tables too),
because this VM pages out file pages idle for ~30 s. Before timing, one untimed epoch of each
case must deliver every sample exactly once (sums of every field match the source); the cases
are then timed in interleaved rounds.
Per-sample files are kept under ``--workdir`` and reused; pydata datasets are rewritten per run.
Prints a markdown table and writes ``results/loaders.json``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import markdown_table, measure_interleaved_each, write_results
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import pydata
from pydata.page_cache import touch_files
from pydata.synthetic import class_images, smooth_latents

BATCH = 256
FIELDS = ("image", "label", "latent")
RECORD = np.dtype([("image", "u1", (3, 64, 64)), ("label", "<i8"), ("latent", "<f2", (4, 32, 32))])
SAMPLE_BYTES = RECORD.itemsize  # 20,488: the decoded bytes every case delivers per sample
UNAVAILABLE = "pydata dataset API not available yet"
Batch = Mapping[str, Any]


@dataclass
class Case:
    """One row of the table: an epoch of batches (or a ceiling's raw ``run``) and its files."""

    name: str
    setting: str
    config: str = "raw"
    batches: Callable[[], Iterable[Batch]] | None = None
    run: Callable[[], object] | None = None
    touch: Callable[[], object] | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name} | {self.setting} | {self.config}"

    def epoch(self) -> object:
        if self.run is not None:
            return self.run()
        assert self.batches is not None
        return sum(len(b["label"]) for b in self.batches())


# -- data ----------------------------------------------------------------------------------------

def source_fields(root: Path, count: int, seed: int) -> dict[str, np.ndarray]:
    """The dataset as one ``.npy`` per field (made once, reused from ``root``), memory-mapped."""
    paths = {name: root / "fields" / f"{name}.npy" for name in FIELDS}
    if not all(p.exists() for p in paths.values()):
        paths["image"].parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        images, labels = class_images(count, size=64, seed=seed)
        chunks = [smooth_latents(min(4096, count - s), 4, 32, seed=seed + 1 + s // 4096)
                  for s in range(0, count, 4096)]
        arrays = {"image": images, "label": labels, "latent": np.concatenate(chunks)}
        for name, array in arrays.items():
            with paths[name].with_suffix(".tmp").open("wb") as f:
                np.save(f, array)
            paths[name].with_suffix(".tmp").replace(paths[name])
        print(f"generated {count} samples in {time.perf_counter() - started:.1f} s")
    # Plain ndarray views of the maps (fancy indexing a np.memmap returns a np.memmap).
    return {name: np.asarray(np.load(path, mmap_mode="r")) for name, path in paths.items()}


def write_per_sample(folder: Path, fields: Mapping[str, np.ndarray], kind: str) -> list[Path]:
    """One ``.pt`` (a dict of tensors) or ``.npy`` (a RECORD) per sample; existing files are kept."""
    count = len(fields["label"])
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.{kind}" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if not missing:
        print(f"reusing {count} .{kind} files in {folder}")
    for i in tqdm(missing, desc=f"writing .{kind} files", unit="file", disable=not missing):
        tmp = paths[i].with_suffix(".tmp")  # renamed when complete: a killed run leaves no stub
        if kind == "pt":
            torch.save({name: torch.from_numpy(np.array(fields[name][i])) for name in FIELDS}, tmp)
        else:
            record = np.empty((), RECORD)
            for name in FIELDS:
                record[name] = fields[name][i]
            with tmp.open("wb") as f:
                np.save(f, record)
        tmp.replace(paths[i])
    return paths


class PtFiles(Dataset[dict[str, torch.Tensor]]):
    """The common baseline: ``torch.load`` of one file per sample."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return torch.load(self.paths[i])


class NpyFiles(PtFiles):
    """One ``np.load`` of a structured record per sample (no pickle)."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        record = np.load(self.paths[i])
        return {name: torch.from_numpy(record[name]) for name in FIELDS}


def touch_mapped(fields: Mapping[str, np.ndarray]) -> None:
    """Touches every page through this process's mappings (page cache and page tables)."""
    for array in fields.values():
        int(array.reshape(-1).view(np.uint8)[::4096].sum())


def checksums(batches: Iterable[Batch]) -> dict[str, float]:
    """Order-free sums of an epoch: every sample delivered once gives the source's sums."""
    total = {"samples": 0.0, "label": 0.0, "image": 0.0, "latent": 0.0, "latent_sq": 0.0}
    for b in batches:
        latent = torch.as_tensor(b["latent"]).double()
        total["samples"] += len(b["label"])
        total["label"] += int(torch.as_tensor(b["label"]).sum())
        total["image"] += int(torch.as_tensor(b["image"]).sum(dtype=torch.int64))
        total["latent"] += float(latent.sum())
        total["latent_sq"] += float(latent.square().sum())
    return total


def chunks_of(fields: Mapping[str, np.ndarray]) -> Iterator[Batch]:
    count = len(fields["label"])
    for s in range(0, count, 4096):
        yield {name: torch.from_numpy(np.array(a[s : s + 4096])) for name, a in fields.items()}


def check(case: Case, expected: Mapping[str, float]) -> str:
    """Runs one untimed epoch; returns "" when it delivered every sample once, else why not."""
    if case.batches is None:
        case.epoch()
        return ""
    got = checksums(case.batches())
    for key, want in expected.items():
        if case.config != "raw" and key.startswith("latent"):
            # Quantised latents: their sums move by a small fraction of the total energy.
            tolerance = (1e-4 if key == "latent" else 1e-2) * expected["latent_sq"]
        else:
            tolerance = 1e-9 * abs(want) + 1e-6
        if abs(got[key] - want) > tolerance:
            return f"failed check: {key} sum {got[key]:.6g}, expected {want:.6g}"
    return ""


# -- cases ---------------------------------------------------------------------------------------

def torch_loader(dataset: Dataset[Any], workers: int) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))


def per_sample_cases(root: Path, fields: Mapping[str, np.ndarray], workers: list[int]) -> list[Case]:
    cases = []
    for kind, cls, label in (("pt", PtFiles, ".pt per sample, torch.load"),
                             ("npy", NpyFiles, ".npy per sample, np.load")):
        paths = write_per_sample(root / kind, fields, kind)
        for k in workers:
            dl = torch_loader(cls(paths), k)
            cases.append(Case(f"DataLoader, {label}", f"{k} workers", batches=lambda dl=dl: dl,
                              touch=lambda paths=paths: touch_files(paths)))
    return cases


def memmap_cases(fields: Mapping[str, np.ndarray]) -> list[Case]:
    count = len(fields["label"])
    rng = np.random.default_rng(0)

    def one_thread() -> Iterator[Batch]:
        order = rng.permutation(count)
        for s in range(0, count, BATCH):
            idx = np.sort(order[s : s + BATCH])
            yield {name: torch.from_numpy(a[idx]) for name, a in fields.items()}

    pool = ThreadPoolExecutor(2)

    def two_threads() -> Iterator[Batch]:
        order = rng.permutation(count)
        for s in range(0, count, BATCH):
            idx = np.sort(order[s : s + BATCH])
            out = {name: torch.from_numpy(np.empty((len(idx), *a.shape[1:]), a.dtype))
                   for name, a in fields.items()}
            half = len(idx) // 2
            jobs = [pool.submit(_take_rows, fields, idx, out, lo, hi)
                    for lo, hi in ((0, half), (half, len(idx)))]
            for job in jobs:
                job.result()
            yield out

    touch = lambda: touch_mapped(fields)
    return [Case("np.memmap, arr[sorted idx] per field", "main process, 1 thread",
                 batches=one_thread, touch=touch),
            Case("np.memmap, np.take per field", "2 threads (halves)", batches=two_threads, touch=touch)]


def _take_rows(fields: Mapping[str, np.ndarray], idx: np.ndarray, out: Mapping[str, torch.Tensor],
               lo: int, hi: int) -> None:
    for name, a in fields.items():
        np.take(a, idx[lo:hi], axis=0, out=out[name].numpy()[lo:hi], mode="clip")


def ceiling_cases(fields: Mapping[str, np.ndarray]) -> list[Case]:
    """The same bytes per batch as every case, moved as fast as this machine moves them."""
    count = len(fields["label"])
    rng = np.random.default_rng(1)
    order = rng.permutation(count)
    batches = [np.sort(order[s : s + BATCH]) for s in range(0, count, BATCH)]
    starts = [int(rng.integers(0, count - len(idx) + 1)) for idx in batches]
    out = {name: np.empty((BATCH, *a.shape[1:]), a.dtype) for name, a in fields.items()}

    def memcpy(lo: float = 0.0, hi: float = 1.0) -> None:
        for s, idx in zip(starts, batches, strict=True):
            a, b = int(lo * len(idx)), int(hi * len(idx))
            for name, src in fields.items():
                np.copyto(out[name][a:b], src[s + a : s + b])

    def memcpy_two_threads() -> None:
        threads = [threading.Thread(target=memcpy, args=half) for half in ((0.0, 0.5), (0.5, 1.0))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def gather_contiguous() -> None:
        for s, idx in zip(starts, batches, strict=True):
            rows = np.arange(s, s + len(idx))
            for name, src in fields.items():
                pydata.gather_rows([src], rows, out[name][: len(idx)], threads=2)

    def gather_shuffled() -> None:
        for idx in batches:
            for name, src in fields.items():
                pydata.gather_rows([src], idx, out[name][: len(idx)], threads=2)

    def take() -> None:
        for idx in batches:
            for name, src in fields.items():
                # mode="clip": with the default "raise", np.take buffers ``out`` (a second copy).
                np.take(src, idx, axis=0, out=out[name][: len(idx)], mode="clip")

    last, n = batches[-1], len(batches[-1])
    take()  # correct before it is fast
    assert all(np.array_equal(out[f][:n], fields[f][last]) for f in FIELDS)
    gather_contiguous()
    assert all(np.array_equal(out[f][:n], fields[f][starts[-1] : starts[-1] + n]) for f in FIELDS)
    touch = lambda: touch_mapped(fields)
    return [Case("ceiling: memcpy of contiguous rows", "1 thread", run=memcpy, touch=touch),
            Case("ceiling: np.take into a preallocated batch", "1 thread", run=take, touch=touch),
            Case("ceiling: memcpy, numpy copyto of halves", "2 threads", run=memcpy_two_threads,
                 touch=touch),
            Case("ceiling: memcpy, pydata.gather_rows of contiguous rows", "2 threads",
                 run=gather_contiguous, touch=touch),
            # Not a memcpy ceiling: what copying exactly a shuffled batch's rows costs with no
            # loader around it, the bound for any loader of this random access pattern.
            Case("bound: pydata.gather_rows of the shuffled batches' rows, no loader", "2 threads",
                 run=gather_shuffled, touch=touch)]


def pydata_cases(root: Path, fields: Mapping[str, np.ndarray], config: str,
                 workers: list[int], threads: list[int]) -> list[Case]:
    """Cases 4 and 5 on a dataset written now; rows say why when the API is missing or fails."""
    names = [("DataLoader + pydata.MemoryMappedDataset", f"{k} workers") for k in workers]
    names += [("pydata.Loader", f"{t} thread{'s' * (t > 1)}") for t in threads]
    try:
        from pydata import Field, Loader, MemoryMappedDataset, ShardWriter, create_dataloader
    except ImportError as exc:
        print(f"{UNAVAILABLE} ({exc})")
        return [Case(n, s, config, note=UNAVAILABLE) for n, s in names]
    try:
        path = root / f"pydata-{config.replace('+', '-')}"
        shutil.rmtree(path, ignore_errors=True)
        codec = {} if config == "raw" else {"codec": config}
        schema = {"image": Field("uint8", (3, 64, 64)), "label": Field("int64", ()),
                  "latent": Field("float16", (4, 32, 32), **codec)}
        started = time.perf_counter()
        with ShardWriter(path, schema, shard_bytes=64 << 20) as writer:
            for s in range(0, len(fields["label"]), 4096):
                writer.write_batch({name: a[s : s + 4096] for name, a in fields.items()})
        files = sorted(p for p in path.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"wrote pydata {config} dataset: {size / 1e6:.0f} MB in {len(files)} files, "
              f"{time.perf_counter() - started:.1f} s")
        ds = MemoryMappedDataset(path)
        touch = _touch_dataset(ds)
        cases = []
        for k in workers:
            dl = create_dataloader(ds, batch_size=BATCH, num_workers=k, shuffle=True, seed=0)
            cases.append(Case(*names[len(cases)], config, batches=lambda dl=dl: dl, touch=touch))
        for t in threads:
            loader = Loader(ds, batch_size=BATCH, shuffle=True, seed=0, num_threads=t, prefetch=4)
            cases.append(Case(*names[len(cases)], config, batches=_epochs(loader), touch=touch))
        return cases
    except Exception as exc:  # noqa: BLE001  (the API is young: report it, keep the baselines)
        traceback.print_exc()
        return [Case(n, s, config, note=f"error: {type(exc).__name__}: {exc}"[:120]) for n, s in names]


def _touch_dataset(ds: Any) -> Callable[[], object]:
    """Touches the shards through the dataset's own maps (``MemoryMappedDataset.prefault``), so
    that its page tables are as warm as the numpy cases' (``touch_mapped``). A DataLoader
    worker's maps are its own: for those rows only the page cache is warm."""
    return ds.prefault  # type: ignore[no-any-return]


def _epochs(loader: Any) -> Callable[[], Iterable[Batch]]:
    epoch = itertools.count()

    def batches() -> Iterable[Batch]:
        loader.set_epoch(next(epoch))
        return loader

    return batches


# -- report --------------------------------------------------------------------------------------

def report(cases: list[Case], timings: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        t = timings.get(case.key)
        row: dict[str, Any] = {"case": case.name, "setting": case.setting, "config": case.config,
                               "note": case.note}
        if t is not None:
            row |= {"samples_per_s": count / t.best, "median_samples_per_s": count / t.median,
                    "mb_per_s": count * SAMPLE_BYTES / t.best / 1e6, "spread": t.spread, "seconds": t.samples}
        rows.append(row)
    rate = {(r["case"], r["setting"]): r.get("samples_per_s") for r in rows}
    pt = max((v for (c, _), v in rate.items() if c.startswith("DataLoader, .pt") and v), default=None)
    memmap = rate.get(("np.memmap, arr[sorted idx] per field", "main process, 1 thread"))
    # The fastest memcpy row, whatever its thread count: where memcpy is bandwidth-bound (2 vCPUs
    # that are hyperthreads of one core), 2 threads need not beat 1, and a ceiling that a
    # 1-thread copy beats would be no ceiling.
    ceiling = max((v for (c, _), v in rate.items() if c.startswith("ceiling: memcpy") and v), default=None)
    for r in rows:
        for key, base in (("vs_pt", pt), ("vs_memmap", memmap), ("vs_ceiling", ceiling)):
            r[key] = r["samples_per_s"] / base if base and "samples_per_s" in r else None
    return rows


def _cells(row: Mapping[str, Any]) -> list[object]:
    """Rates as whole numbers, ratios to 3 significant digits, a dash where not measured."""
    if row.get("samples_per_s") is None:
        return ["—"] * 6
    rates = [f"{row[k]:,.0f}" for k in ("samples_per_s", "mb_per_s")]
    ratios = [row[k] for k in ("vs_pt", "vs_memmap", "vs_ceiling", "spread")]
    return rates + [r if r is not None else "—" for r in ratios]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4,096 samples, 3 rounds: a smoke run")
    parser.add_argument("--samples", type=int, help="samples in the dataset (default 40,960: 0.84 GB)")
    parser.add_argument("--repeats", type=int, help="timed epochs per case (default 5; 3 with --quick)")
    parser.add_argument("--workdir", type=Path, help="keep the data here and reuse it (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = args.samples or (4096 if args.quick else 40_960)
    repeats = args.repeats or (3 if args.quick else 5)
    workers, threads = [0, 2], [1, 2]

    with tempfile.TemporaryDirectory(prefix="pydata-loaders-") as tmp:
        root = (args.workdir or Path(tmp)) / f"loaders-{count}-seed{args.seed}"
        fields = source_fields(root, count, args.seed)
        expected = checksums(chunks_of(fields))
        cases = per_sample_cases(root, fields, workers) + memmap_cases(fields)
        cases += pydata_cases(root, fields, "raw", workers, threads)
        cases += pydata_cases(root, fields, "int8+lz4", workers, threads)
        cases += ceiling_cases(fields)
        runnable = [c for c in cases if c.batches is not None or c.run is not None]
        print("checking every case: one untimed epoch each must deliver every sample once")
        for case in runnable:
            started = time.perf_counter()
            if case.touch:
                case.touch()
            try:
                case.note = check(case, expected) or case.note
            except Exception as exc:  # noqa: BLE001  (a young loader may fail: keep the rest)
                traceback.print_exc()
                case.note = f"failed check: {type(exc).__name__}: {exc}"[:120]
            print(f"  {case.key}: {case.note or 'ok'} ({time.perf_counter() - started:.1f} s)")
        timed = [c for c in runnable if not c.note.startswith("failed")]
        print(f"timing {len(timed)} cases: {repeats} interleaved rounds of one epoch each; right "
              "before each timed epoch, the case's files are read in full or their maps touched "
              "page by page (hot page cache: this VM pages out file pages idle for ~30 s)")
        timings = measure_interleaved_each({c.key: c.epoch for c in timed}, repeats=repeats,
                                           before={c.key: c.touch for c in timed if c.touch}, warmup=False)
        rows = report(cases, timings, count)

    print(f"\n## One shuffled epoch of {count} samples ({count * SAMPLE_BYTES / 1e9:.2f} GB), "
          f"batches of {BATCH}, best of {repeats} (hot)\n")
    print(markdown_table(
        ["case", "config", "workers/threads", "samples/s", "MB/s", "x .pt (best)", "x memmap (1 thread)",
         "x memcpy ceiling", "spread", "note"],
        [[r["case"], r["config"], r["setting"], *_cells(r), r["note"]] for r in rows]))
    path = write_results("loaders", {"quick": args.quick, "samples": count, "sample_bytes": SAMPLE_BYTES,
                                     "batch": BATCH, "repeats": repeats, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
