"""The baselines users already have: torch DataLoader over one file per sample (``.pt`` with
``torch.load``, ``.npy`` with ``np.load``), over ``np.memmap`` arrays indexed per sample, and a
batched ``np.memmap`` gather (one numpy fancy-index call per field per batch, the strongest
few-line baseline). They read local files only; the S3 setting has no row for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from pydata.peers.systems.base import Batch, Reader, RunContext, System, iterate
from pydata.peers.workloads import FieldSpec, Source, WORKLOADS

__all__ = ["MemmapBatched", "MemmapPerSample", "NpyFiles", "PtFiles", "collate_for"]

def collate_for(specs: Sequence[FieldSpec]) -> Any:
    """torch's default collate for fixed fields; variable-length fields stay lists."""
    if all(s.shape is not None for s in specs):
        return default_collate

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {s.name: [x[s.name] for x in samples] if s.shape is None
                else default_collate([x[s.name] for x in samples]) for s in specs}

    return collate


def _dataloader(dataset: Dataset[Any], ctx: RunContext) -> DataLoader[Any]:
    """torch's DataLoader as its docs show it: shuffled, persistent workers, seeded."""
    return DataLoader(dataset, batch_size=ctx.batch, shuffle=True, num_workers=ctx.variant,
                      persistent_workers=ctx.variant > 0, collate_fn=collate_for(WORKLOADS[ctx.workload]),
                      generator=torch.Generator().manual_seed(ctx.seed))


class _LoaderReader(Reader):
    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader: DataLoader[Any] | None = loader

    def batches(self) -> Iterable[Batch]:
        assert self.loader is not None
        return iterate(self.loader)

    def close(self) -> None:
        self.loader = None  # persistent workers exit with the loader's iterator


class _FilesDataset(Dataset[dict[str, Any]]):
    def __init__(self, folder: Path, suffix: str, specs: Sequence[FieldSpec]) -> None:
        self.paths = [str(p) for p in sorted(folder.glob(f"*.{suffix}"))]
        self.specs = specs

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return torch.load(self.paths[i])  # type: ignore[no-any-return]


class _NpyDataset(_FilesDataset):
    def __getitem__(self, i: int) -> dict[str, Any]:
        value = np.load(self.paths[i])
        if len(self.specs) == 1:
            return {self.specs[0].name: torch.from_numpy(value)}
        return {s.name: torch.from_numpy(np.ascontiguousarray(value[s.name])) for s in self.specs}


def _record_dtype(specs: Sequence[FieldSpec]) -> np.dtype[Any]:
    return np.dtype([(s.name, s.dtype, s.shape or ()) for s in specs])


class PtFiles(System):
    """torch DataLoader over one ``.pt`` file (a dict of tensors) per sample, ``torch.load`` each."""

    name = "DataLoader, .pt per sample"
    family = "baseline"

    def convert(self, source: Source, out: Path) -> None:
        for i in range(source.count):
            sample = source.batch([i])
            torch.save({k: torch.from_numpy(np.array(v[0])) for k, v in sample.items()}, out / f"{i:07d}.pt")

    def open(self, ctx: RunContext) -> Reader:
        return _LoaderReader(_dataloader(_FilesDataset(ctx.data, "pt", WORKLOADS[ctx.workload]), ctx))


class NpyFiles(System):
    """torch DataLoader over one ``.npy`` per sample (a structured record when several fields)."""

    name = "DataLoader, .npy per sample"
    family = "baseline"

    def convert(self, source: Source, out: Path) -> None:
        record = _record_dtype(source.specs) if len(source.specs) > 1 else None
        for i in range(source.count):
            sample = source.batch([i])
            if record is None:
                value = np.asarray(sample[source.specs[0].name][0])
            else:
                value = np.empty((), record)
                for spec in source.specs:
                    value[spec.name] = sample[spec.name][0]
            np.save(out / f"{i:07d}.npy", value)

    def open(self, ctx: RunContext) -> Reader:
        return _LoaderReader(_dataloader(_NpyDataset(ctx.data, "npy", WORKLOADS[ctx.workload]), ctx))


def _copy_source(source: Source, out: Path) -> None:
    """The source's own layout: one ``.npy`` per fixed field, offsets + payload per variable one."""
    for name, array in source.arrays.items():
        np.save(out / f"{name}.npy", array)


class _MemmapDataset(Dataset[dict[str, Any]]):
    """Per-sample indexing of ``np.load(mmap_mode="r")`` arrays."""

    def __init__(self, folder: Path, workload: str) -> None:
        self.source = Source(workload, folder)

    def __len__(self) -> int:
        return self.source.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: torch.from_numpy(np.array(v[0])) for k, v in self.source.batch([i]).items()}


class MemmapPerSample(System):
    """torch DataLoader over ``np.memmap`` arrays, one sample per ``__getitem__``."""

    name = "DataLoader, np.memmap per sample"
    family = "baseline"

    def convert(self, source: Source, out: Path) -> None:
        _copy_source(source, out)

    def open(self, ctx: RunContext) -> Reader:
        return _LoaderReader(_dataloader(_MemmapDataset(ctx.data, ctx.workload), ctx))


class _BatchedReader(Reader):
    def __init__(self, ctx: RunContext) -> None:
        self.source = Source(ctx.workload, ctx.data)
        self.threads, self.size = ctx.variant, ctx.batch
        self.rng = np.random.default_rng(ctx.seed)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def batches(self) -> Iterator[Batch]:
        order = self.rng.permutation(self.source.count)
        for start in range(0, len(order), self.size):
            yield self._batch(np.sort(order[start : start + self.size]))

    def _batch(self, idx: np.ndarray[Any, Any]) -> Batch:
        out: Batch = {}
        for spec in self.source.specs:
            if spec.shape is None:
                out[spec.name] = self._ragged(spec.name, idx)
            elif self.pool is None:
                out[spec.name] = self.source.arrays[spec.name][idx]
            else:
                out[spec.name] = self._take_halves(self.source.arrays[spec.name], idx)
        return out

    def _take_halves(self, array: np.ndarray[Any, Any], idx: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each thread ``np.take``s its share of the batch (numpy releases the GIL for the copy)."""
        assert self.pool is not None
        result = np.empty((len(idx), *array.shape[1:]), array.dtype)
        bounds = np.linspace(0, len(idx), self.threads + 1).astype(int)
        jobs = [self.pool.submit(np.take, array, idx[lo:hi], 0, result[lo:hi], "clip")
                for lo, hi in zip(bounds, bounds[1:])]
        for job in jobs:
            job.result()
        return result

    def _ragged(self, name: str, idx: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        """One fancy-index call for the whole batch: every wanted position of the payload."""
        offsets, payload = self.source.arrays[f"{name}.offsets"], self.source.arrays[f"{name}.payload"]
        starts, stops = offsets[idx], offsets[idx + 1]
        lengths = stops - starts
        positions = np.arange(int(lengths.sum())) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        flat = payload[positions]
        return np.split(flat, np.cumsum(lengths)[:-1])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class MemmapBatched(System):
    """``np.memmap`` arrays gathered a batch at a time: ``arr[sorted batch indices]`` per field in
    the main process (1 thread), or ``np.take`` of equal shares of each batch in 2 threads."""

    name = "np.memmap, batched gather"
    family = "baseline"
    variant_kind: ClassVar[str] = "threads"
    variants: ClassVar[tuple[int, ...]] = (1, 2)

    def convert(self, source: Source, out: Path) -> None:
        _copy_source(source, out)

    def open(self, ctx: RunContext) -> Reader:
        return _BatchedReader(ctx)
