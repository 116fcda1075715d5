"""The benchmark's workloads: the source data every system converts and must deliver intact.

Images and latents come from :mod:`pydata.synthetic` (the generator the demo and the tests use);
token sequences, which it does not make, are drawn here from a seeded generator. The source is
kept as plain ``.npy`` files (one per fixed field; offsets + payload for variable rows), made
once per (workload, samples, seed) and memory-mapped by every process that needs it.

Correctness is checked by fingerprints: each sample hashes to a uint64 (a weighted sum of its
bytes as 64-bit words, wrapping), and an epoch is correct when the multiset of its samples'
fingerprints equals the source's: every sample once, no other bytes. The trade-off: a fingerprint
is a hash, so a corruption can in principle collide (probability ~2^-64 per sample), bought for a
check that costs one pass over the bytes instead of keeping every delivered batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pydata.synthetic import class_images, smooth_latents

__all__ = ["WORKLOADS", "FieldSpec", "Source", "Verdict", "batch_fingerprints", "compare", "open_source"]

U64 = npt.NDArray[np.uint64]
TOKEN_RANGE = (100, 2000)  # tokens per sequence, inclusive
VOCAB = 50_257
_CHUNK = 4096


@dataclass(frozen=True)
class FieldSpec:
    """One field of a workload: ``shape`` None means variable-length 1-d rows."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None


WORKLOADS: dict[str, tuple[FieldSpec, ...]] = {
    "images": (FieldSpec("image", "uint8", (3, 64, 64)), FieldSpec("label", "int64", ())),
    "latents": (FieldSpec("latent", "float16", (4, 32, 32)),),
    "tokens": (FieldSpec("tokens", "int32", None),),
}


def _weights(n: int) -> U64:
    """Odd 64-bit weights for word positions ``0..n-1``: splitmix64 of the position, so that every
    process and every row length agree on each position's weight."""
    z = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x5EED)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) | np.uint64(1)  # type: ignore[no-any-return]


_FIELD_WEIGHTS = _weights(64)


def _fixed_fingerprints(rows: np.ndarray[Any, Any]) -> U64:
    """One uint64 per row of a fixed-shape array (any dtype)."""
    flat = np.ascontiguousarray(rows).reshape(len(rows), -1).view(np.uint8)
    pad = -flat.shape[1] % 8
    if pad:
        flat = np.concatenate([flat, np.zeros((len(flat), pad), np.uint8)], axis=1)
    words = flat.view(np.uint64)
    return (words * _weights(words.shape[1])).sum(axis=1, dtype=np.uint64)  # type: ignore[no-any-return]


def _ragged_fingerprints(rows: Sequence[np.ndarray[Any, Any]]) -> U64:
    """One uint64 per variable-length row: its bytes weighted by position, plus its length."""
    if not rows:
        return np.zeros(0, np.uint64)
    raw = [np.ascontiguousarray(r).reshape(-1).view(np.uint8) for r in rows]
    lengths = np.array([len(r) for r in raw], np.int64)
    values = np.concatenate(raw).astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(values)) - np.repeat(starts, lengths)
    weighted = values * _weights(int(lengths.max(initial=0)) or 1)[position]
    sums = np.zeros(len(raw), np.uint64)
    nonempty = lengths > 0
    sums[nonempty] = np.add.reduceat(weighted, starts[nonempty], dtype=np.uint64)
    return sums + lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # type: ignore[no-any-return]


def batch_fingerprints(specs: Sequence[FieldSpec], batch: Mapping[str, Any]) -> U64:
    """The fingerprints of a batch's samples (a dict of arrays, or lists for variable rows).

    Raises:
        KeyError: The batch lacks a field of the workload (named).
    """
    total: U64 | None = None
    for i, spec in enumerate(specs):
        if spec.name not in batch:
            msg = f"batch has no field {spec.name!r}; it has {sorted(batch)}"
            raise KeyError(msg)
        value = batch[spec.name]
        if spec.shape is None:
            fp = _ragged_fingerprints([np.asarray(r, dtype=spec.dtype) for r in value])
        else:
            fp = _fixed_fingerprints(np.asarray(value, dtype=spec.dtype).reshape(-1, *spec.shape))
        term = fp * _FIELD_WEIGHTS[i]
        total = term if total is None else total + term
    assert total is not None
    return total


@dataclass(frozen=True)
class Verdict:
    """How an epoch's samples compare with the source's."""

    delivered: int
    expected: int
    missing: int  # source samples delivered fewer times than they occur in the source
    duplicated: int  # extra deliveries of source samples
    unknown: int  # delivered samples whose bytes match no source sample

    @property
    def ok(self) -> bool:
        return self.missing == self.duplicated == self.unknown == 0 and self.delivered == self.expected

    def describe(self) -> str:
        """A one-line account: "correct" or what went wrong."""
        if self.ok:
            return "correct"
        return (f"incorrect: delivered {self.delivered} of {self.expected} samples; {self.missing} "
                f"missing, {self.duplicated} duplicated, {self.unknown} with bytes unequal to any source sample")


def compare(expected: U64, delivered: U64) -> Verdict:
    """Compares two multisets of fingerprints."""
    want_values, want_counts = np.unique(expected, return_counts=True)
    got_values, got_counts = np.unique(delivered, return_counts=True)
    known = np.isin(got_values, want_values)
    got_of_want = np.zeros(len(want_values), np.int64)
    got_of_want[np.searchsorted(want_values, got_values[known])] = got_counts[known]
    return Verdict(delivered=len(delivered), expected=len(expected),
                   missing=int(np.maximum(want_counts - got_of_want, 0).sum()),
                   duplicated=int(np.maximum(got_of_want - want_counts, 0).sum()),
                   unknown=int(got_counts[~known].sum()))


class Source:
    """A workload's source data on disk, memory-mapped.

    Attributes:
        workload: The workload's name.
        specs: Its fields.
        root: The directory holding its ``.npy`` files.
        count: Samples.
    """

    def __init__(self, workload: str, root: Path) -> None:
        self.workload, self.root, self.specs = workload, root, WORKLOADS[workload]
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        for spec in self.specs:
            names = [spec.name] if spec.shape is not None else [f"{spec.name}.offsets", f"{spec.name}.payload"]
            for name in names:
                self.arrays[name] = np.asarray(np.load(root / f"{name}.npy", mmap_mode="r"))
        first = self.specs[0]
        self.count = len(self.arrays[first.name if first.shape is not None else f"{first.name}.offsets"])
        self.count -= first.shape is None  # offsets has one more entry than rows

    def rows(self, name: str, indices: Sequence[int] | np.ndarray[Any, Any]) -> Any:
        """Field ``name`` of the samples ``indices``: an array, or a list of arrays for variable rows."""
        if name in self.arrays:
            return self.arrays[name][np.asarray(indices, np.int64)]
        offsets, payload = self.arrays[f"{name}.offsets"], self.arrays[f"{name}.payload"]
        return [payload[offsets[i] : offsets[i + 1]] for i in np.asarray(indices, np.int64)]

    def batch(self, indices: Sequence[int] | np.ndarray[Any, Any]) -> dict[str, Any]:
        """The samples ``indices`` as a batch dict."""
        return {spec.name: self.rows(spec.name, indices) for spec in self.specs}

    def sample_bytes(self) -> float:
        """Mean bytes per sample, as delivered (decoded)."""
        return sum(a.nbytes for n, a in self.arrays.items() if not n.endswith(".offsets")) / self.count

    def files(self) -> list[Path]:
        """The source's files."""
        return sorted(self.root.glob("*.npy"))

    def fingerprints(self) -> U64:
        """Every sample's fingerprint, in index order."""
        parts = [batch_fingerprints(self.specs, self.batch(np.arange(s, min(s + _CHUNK, self.count))))
                 for s in range(0, self.count, _CHUNK)]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def _generate(workload: str, count: int, seed: int) -> dict[str, np.ndarray[Any, Any]]:
    if workload == "images":
        images, labels = class_images(count, size=64, seed=seed)
        return {"image": images, "label": labels}
    if workload == "latents":
        chunks = [smooth_latents(min(_CHUNK, count - s), 4, 32, seed=seed + 1 + s // _CHUNK)
                  for s in range(0, count, _CHUNK)]
        return {"latent": np.concatenate(chunks) if chunks else np.zeros((0, 4, 32, 32), np.float16)}
    rng = np.random.default_rng([seed, 7])
    lengths = rng.integers(TOKEN_RANGE[0], TOKEN_RANGE[1], count, endpoint=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    payload = rng.integers(0, VOCAB, int(offsets[-1]), dtype=np.int32)
    return {"tokens.offsets": offsets, "tokens.payload": payload}


def open_source(workload: str, count: int, seed: int, root: Path) -> Source:
    """The source of ``workload`` under ``root/<workload>-<count>-seed<seed>``, generated on first
    use (each file written to a temporary name, then renamed).

    Raises:
        KeyError: An unknown workload (the known ones are named).
    """
    if workload not in WORKLOADS:
        msg = f"unknown workload {workload!r}; known: {sorted(WORKLOADS)}"
        raise KeyError(msg)
    folder = root / f"{workload}-{count}-seed{seed}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in _generate(workload, count, seed).items():
            tmp = folder / f"{name}.tmp"
            with tmp.open("wb") as f:
                np.save(f, array)
            tmp.replace(folder / f"{name}.npy")
        done.touch()
    return Source(workload, folder)
