"""Batches as torch values, and the list-like form a torch DataLoader's fetch expects.

The format layer hands out numpy; this module is where a batch becomes tensors (zero-copy
``torch.from_numpy``, bfloat16 by reinterpreting its uint16 bits). ``SampleBatch`` is what
``MemoryMappedDataset.__getitems__`` returns: the whole batch, assembled in one call, that still
behaves as the list of per-sample dicts torch's ``default_collate`` expects. ``collate`` (used by
``pydata.create_dataloader``) unwraps it without copying; ``default_collate`` works too, slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np
import torch

from pydata.format.ragged import Ragged
from pydata.format.schema import Field

__all__ = ["SampleBatch", "collate", "to_torch"]


def tensor_of(field: Field, array: np.ndarray[Any, Any]) -> torch.Tensor:
    """A zero-copy tensor over ``array``; read-only arrays are allowed."""
    if not array.flags.writeable:
        # Only where the kernel refused a copy-on-write mapping: torch warns because it cannot
        # mark tensors read-only.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
    else:
        tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if field.dtype == "bfloat16" else tensor


def to_torch(fields: Mapping[str, Field], batch: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a BatchReader batch or sample: arrays to tensors, a Ragged of arrays to a Ragged
    of tensors, lists of arrays to lists of tensors; bytes and str stay as they are."""
    out: dict[str, Any] = {}
    for name, value in batch.items():
        field = fields[name]
        if isinstance(value, np.ndarray):
            out[name] = tensor_of(field, value)
        elif isinstance(value, Ragged):
            out[name] = Ragged(tensor_of(field, value.values), torch.from_numpy(value.offsets),
                               torch.from_numpy(value.shapes))
        elif field.kind == "tensor":
            out[name] = [tensor_of(field, v) for v in value]
        else:
            out[name] = value
    return out


class SampleBatch(Sequence[dict[str, Any]]):
    """A batch assembled at once, seen as a sequence of per-sample dicts.

    Attributes:
        batch: Field -> batched tensor (or list for variable-length fields).
    """

    def __init__(self, batch: dict[str, Any], size: int) -> None:
        self.batch = batch
        self._size = size

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._size))]
        return {name: value[i] for name, value in self.batch.items()}

    def __repr__(self) -> str:
        return f"SampleBatch(size={self._size}, fields={list(self.batch)})"


def collate(samples: Any) -> Any:
    """A DataLoader ``collate_fn``: a SampleBatch becomes its batch dict (no copy); anything
    else goes to torch's ``default_collate``."""
    if isinstance(samples, SampleBatch):
        return samples.batch
    return torch.utils.data.default_collate(samples)
