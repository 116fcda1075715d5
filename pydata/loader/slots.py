"""Batch buffers the Loader fills and hands out, reused only when nothing refers to them.

Each slot holds one preallocated array per fixed-shape field (pinned when asked). A batch is
handed out as tensors made by ``torch.from_numpy`` over *fresh view objects* of those arrays;
the slot keeps only weak references to the views. A tensor (and every tensor viewing it) keeps
its view alive through the storage, so when all of them are gone the weak references die and
the slot is free again. A user who keeps a batch therefore keeps its slot, and the pool grows
rather than overwriting it; in a normal loop the pool stays at ``prefetch + 2`` slots. When a
host-to-device copy was issued from a slot, the slot also waits for that copy's event.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pydata.format.batch_reader import BatchReader

__all__ = ["Slot", "SlotPool"]


@dataclass
class Slot:
    """One set of batch buffers and what the producer put in them."""

    id: int
    arrays: dict[str, np.ndarray[Any, Any]]
    pinned: dict[str, torch.Tensor]  # keeps pinned allocations alive
    views: list[weakref.ref[np.ndarray[Any, Any]]] = field(default_factory=list)
    event: Any = None  # a CUDA event recorded after the copies out of this slot
    busy: bool = False  # between the producer taking it and the consumer handing it out
    # Filled by the producer for the consumer:
    number: int = -1
    indices: np.ndarray[Any, Any] | None = None
    skipped: list[int] = field(default_factory=list)
    lists: dict[str, Any] = field(default_factory=dict)  # variable-length fields
    nbytes: int = 0
    error: BaseException | None = None

    def in_use(self) -> bool:
        if self.busy or any(ref() is not None for ref in self.views):
            return True
        return self.event is not None and not self.event.query()

    def hand_out(self, n: int) -> dict[str, np.ndarray[Any, Any]]:
        """Fresh view objects of the first ``n`` rows, tracked weakly."""
        views = {name: arr[:n] for name, arr in self.arrays.items()}
        self.views = [weakref.ref(v) for v in views.values()]
        self.busy = False
        return views


class SlotPool:
    """Allocates and recycles slots for batches of up to ``batch_size`` samples."""

    def __init__(self, reader: BatchReader, batch_size: int, *, pin_memory: bool) -> None:
        self._reader = reader
        self._batch_size = batch_size
        self._pin = pin_memory
        self._slots: list[Slot] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, slot_id: int) -> Slot:
        return self._slots[slot_id]

    def acquire(self) -> Slot:
        """A free slot, or a new one when every slot is still referenced."""
        with self._lock:
            for slot in self._slots:
                if not slot.in_use():
                    slot.busy, slot.event = True, None
                    return slot
            slot = self._allocate(len(self._slots))
            slot.busy = True
            self._slots.append(slot)
            return slot

    def release_unclaimed(self) -> None:
        """Frees slots filled for batches that were never handed out (the iteration stopped
        early). Call only once the producer has stopped."""
        with self._lock:
            for slot in self._slots:
                slot.busy = False

    def _allocate(self, slot_id: int) -> Slot:
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        pinned: dict[str, torch.Tensor] = {}
        for name, array in self._reader.allocate(self._batch_size).items():
            if self._pin:
                tensor = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype, pin_memory=True)
                pinned[name] = tensor
                arrays[name] = tensor.numpy()
            else:
                arrays[name] = array
        return Slot(slot_id, arrays, pinned)
