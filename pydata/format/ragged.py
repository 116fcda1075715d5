"""Ragged: a batch of variable-shape rows as one flat array and their shapes.

A field whose rows vary in shape (token sequences, boxes per image) comes out of a batch either
as a list of arrays, one per row, or, with ``ragged=True`` on the dataset, as one
:class:`Ragged`: every row's elements back to back in ``values``, where row i starts at
``offsets[i]`` and has shape ``shapes[i]``. The core decodes all rows into ``values`` in one call,
so a batch costs no Python per row, and it travels between processes (DataLoader workers) as
three arrays instead of one tensor per row, the part of a worker hand-off that costs the most.

The same class holds numpy arrays (what the format layer returns) or torch tensors (what the
datasets and loaders hand out, via :meth:`map`); rows are views into ``values`` either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Ragged"]


@dataclass(frozen=True)
class Ragged:
    """Variable-shape rows: ``values`` (1-D, every row's elements in order), ``offsets`` (int64,
    ``len + 1`` entries, row i is ``values[offsets[i]:offsets[i + 1]]``) and ``shapes`` (int64,
    ``(len, ndim)``).

    Example:
        >>> r = Ragged.from_rows([np.arange(3), np.arange(2)])
        >>> len(r), r.lengths().tolist(), r[1].tolist()
        (2, [3, 2], [0, 1])
    """

    values: Any
    offsets: Any
    shapes: Any

    @classmethod
    def from_values(cls, values: Any, shapes: Any) -> Ragged:
        """Rows laid out back to back in ``values`` with these ``shapes`` (numpy)."""
        shapes = np.asarray(shapes, dtype=np.int64)
        sizes = np.prod(shapes, axis=1, dtype=np.int64) if shapes.size else np.zeros(len(shapes), np.int64)
        offsets = np.zeros(len(shapes) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        if int(offsets[-1]) != len(values):
            msg = f"the shapes hold {int(offsets[-1])} elements, values has {len(values)}"
            raise ValueError(msg)
        return cls(values, offsets, shapes)

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray[Any, Any]], dtype: Any = None,
                  ndim: int | None = None) -> Ragged:
        """Packs numpy rows (all of one ndim) into one Ragged; an empty list needs ``dtype``
        and ``ndim``."""
        if not rows and (dtype is None or ndim is None):
            msg = "an empty Ragged needs dtype and ndim"
            raise ValueError(msg)
        ndims = {r.ndim for r in rows} | ({ndim} if ndim is not None else set())
        if len(ndims) > 1:
            msg = f"rows of one Ragged must have one ndim, got {sorted(ndims)}"
            raise ValueError(msg)
        width = ndims.pop()
        values = (np.concatenate([np.ravel(r) for r in rows]) if rows else np.zeros(0, dtype))
        if dtype is not None:
            values = values.astype(dtype, copy=False)
        shapes = np.array([r.shape for r in rows], np.int64).reshape(len(rows), width)
        return cls.from_values(values, shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> Any:
        """Row ``i``: a view of ``values`` in its shape."""
        n = len(self)
        if not -n <= i < n:
            msg = f"row {i} is out of range for {n} rows"
            raise IndexError(msg)
        i %= n
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.values[start:stop].reshape(tuple(int(d) for d in self.shapes[i]))

    def __iter__(self) -> Iterator[Any]:
        bounds = [int(b) for b in self.offsets]
        for i, shape in enumerate(self.shapes.tolist()):
            yield self.values[bounds[i]:bounds[i + 1]].reshape(tuple(shape))

    def tolist(self) -> list[Any]:
        """The rows, as a list of views."""
        return list(self)

    def lengths(self) -> Any:
        """Elements per row (``offsets[1:] - offsets[:-1]``)."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def map(self, fn: Callable[[Any], Any], *, values_only: bool = False) -> Ragged:
        """A Ragged of ``fn`` applied to the three arrays (or to ``values`` alone)."""
        if values_only:
            return Ragged(fn(self.values), self.offsets, self.shapes)
        return Ragged(fn(self.values), fn(self.offsets), fn(self.shapes))

    def to(self, *args: Any, **kwargs: Any) -> Ragged:
        """torch: ``Tensor.to`` of the values and offsets (shapes stay on the CPU for indexing)."""
        return Ragged(self.values.to(*args, **kwargs), self.offsets.to(*args, **kwargs), self.shapes)

    def pin_memory(self) -> Ragged:
        """torch: the values and offsets in page-locked memory (DataLoader's ``pin_memory``
        calls this)."""
        return Ragged(self.values.pin_memory(), self.offsets.pin_memory(), self.shapes)

    def padded(self, value: Any = 0) -> Any:
        """1-D rows as one ``(len, longest)`` array (numpy or torch, as ``values``), padded with
        ``value``."""
        if self.shapes.shape[1] != 1:
            msg = f"padded() needs 1-D rows, these have {self.shapes.shape[1]} dimension(s)"
            raise ValueError(msg)
        lengths = self.lengths()
        longest = int(lengths.max()) if len(self) else 0
        if isinstance(self.values, np.ndarray):
            out = np.full((len(self), longest), value, dtype=self.values.dtype)
            columns = np.arange(longest)
            out[columns[None, :] < lengths[:, None]] = self.values
            return out
        import torch

        out_t = torch.full((len(self), longest), value, dtype=self.values.dtype, device=self.values.device)
        columns_t = torch.arange(longest, device=self.values.device)
        mask = columns_t[None, :] < lengths.to(self.values.device)[:, None]
        out_t[mask] = self.values
        return out_t

    def __repr__(self) -> str:
        kind = "numpy" if isinstance(self.values, np.ndarray) else type(self.values).__name__
        return f"Ragged(rows={len(self)}, elements={len(self.values)}, dtype={self.values.dtype}, {kind})"
