"""DALILoader: the Loader's batches, epochs and resume state, delivered by a DALI pipeline.

It wraps :func:`pydata.dali.create_pipeline` in DALI's ``DALIGenericIterator`` and keeps the
:class:`pydata.Loader`'s bookkeeping: the state is the epoch and the samples consumed globally,
under the same keys, so a state saved by either loader resumes the other. DALI prefetches from
a source that knows only where its pipeline started, so a pipeline is kept across epochs when
the next epoch follows on, and rebuilt (a few tens of milliseconds) after ``set_epoch`` to
another epoch, ``load_state_dict`` or an iteration left early: the trade-off of a stateless
source that DALI's worker processes can run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from pydata.dali.pipeline import Device, Normalize, check_device, create_pipeline, output_fields
from pydata.datasets import order as orders
from pydata.format.schema import Field
from pydata.loader.loader import Loader

__all__ = ["DALILoader"]


class DALILoader:
    """Iterates dicts of batched torch tensors from a pydata dataset through DALI.

    Args:
        dataset: A :class:`pydata.MemoryMappedDataset` or :class:`pydata.StreamingDataset`.
        batch_size, shuffle, seed, drop_last: As for :class:`pydata.Loader`; a short last batch
            is delivered short (unless ``drop_last``).
        fields: Fields to load, fixed-shape tensors only (default: the dataset's).
        shard_id, num_shards: This loader's share, as the Loader's ``rank, world_size``.
        device, device_id: ``"cpu"`` (``device_id=None`` for a CPU-only pipeline) or ``"gpu"``.
        num_threads, prefetch, parallel, py_num_workers, py_start_method: The pipeline's, see
            :func:`pydata.dali.create_pipeline`.
        image, normalize, crop, flip: Image ops, see :func:`pydata.dali.create_pipeline`.

    Example:
        >>> loader = DALILoader(MemoryMappedDataset("data/train"), 256, fields=["image", "label"],
        ...                     normalize=([0.5] * 3, [0.25] * 3), crop=56, flip=0.5)  # doctest: +SKIP
        >>> for batch in loader:                                                    # doctest: +SKIP
        ...     train_step(batch["image"], batch["label"])
    """

    # The Loader's own keys: a state moves between the two loaders.
    EPOCH_KEY, CONSUMED_KEY = Loader.EPOCH_KEY, Loader.CONSUMED_KEY
    SEED_KEY, SAMPLES_KEY = Loader.SEED_KEY, Loader.SAMPLES_KEY

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, fields: Sequence[str] | None = None, *,
                 shard_id: int | None = None, num_shards: int | None = None, device: Device = "cpu",
                 device_id: int | None = None, num_threads: int | None = None, prefetch: int = 2,
                 parallel: bool = False, py_num_workers: int = 1,
                 py_start_method: Literal["fork", "spawn"] = "fork", image: str = "image",
                 normalize: Normalize | None = None, crop: int | tuple[int, int] | None = None,
                 flip: float = 0.0) -> None:
        if batch_size < 1 or prefetch < 1:
            msg = f"batch_size and prefetch must be >= 1, got {batch_size}, {prefetch}"
            raise ValueError(msg)
        check_device(device, device_id)
        self.dataset = dataset
        self.fields = output_fields(dataset, fields)
        self._dtypes = {name: _torch_dtype(f) for name, f in self.fields.items()}
        self.samples: int = dataset.batch_reader(list(self.fields)).samples
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.shard_id, self.num_shards = orders.resolve_rank_world(shard_id, num_shards)
        self._options: dict[str, Any] = {
            "fields": list(self.fields), "shard_id": self.shard_id, "num_shards": self.num_shards,
            "seed": seed, "shuffle": shuffle, "drop_last": drop_last, "image": image,
            "normalize": normalize, "crop": crop, "flip": flip, "device": device,
            "device_id": device_id, "num_threads": num_threads, "prefetch": prefetch,
            "parallel": parallel, "py_num_workers": py_num_workers, "py_start_method": py_start_method}
        self.epoch, self.consumed = 0, 0
        self._order_cache: tuple[int, np.ndarray[Any, Any]] | None = None
        self._iterator: DALIGenericIterator | None = None
        self._follows: tuple[int, int] | None = None  # (epoch, consumed) the pipeline reads next

    # -- order and state ---------------------------------------------------------------------

    def _share(self) -> np.ndarray[Any, Any]:
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            order = self.dataset.epoch_order(self.epoch, seed=self.seed, shuffle=self.shuffle)
            self._order_cache = (self.epoch, order)
        return orders.rank_share(self._order_cache[1], start=self.consumed, rank=self.shard_id,
                                 world_size=self.num_shards)

    def __len__(self) -> int:
        """Batches left in this epoch for this shard (all of them at the start of an epoch)."""
        return orders.num_batches(len(self._share()), self.batch_size, drop_last=self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` from its beginning (epochs also advance by themselves)."""
        self.epoch, self.consumed = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: the epoch and the samples consumed globally (all shards)."""
        return {self.EPOCH_KEY: self.epoch, self.CONSUMED_KEY: self.consumed, self.SEED_KEY: self.seed,
                self.SAMPLES_KEY: self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state`` (a DALILoader's or a :class:`pydata.Loader`'s, any shard count).

        Raises:
            ValueError: The state belongs to another dataset size or seed (both named), or its
                position is past the end of the epoch.
        """
        for key, mine in ((self.SAMPLES_KEY, self.samples), (self.SEED_KEY, self.seed)):
            if state.get(key) != mine:
                msg = f"loader state has {key}={state.get(key)!r}, this loader has {mine!r}"
                raise ValueError(msg)
        consumed = int(state[self.CONSUMED_KEY])
        orders.per_rank_count(self.samples, start=consumed, world_size=self.num_shards)
        self.epoch, self.consumed = int(state[self.EPOCH_KEY]), consumed

    def close(self) -> None:
        """Releases the DALI pipeline (and its worker processes); the next epoch builds one."""
        self._iterator, self._follows = None, None

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        start = self.consumed
        slices = orders.batch_slices(len(self._share()), self.batch_size, drop_last=self.drop_last)
        if slices:
            iterator = self._open(start)
            finished = False
            try:
                for part in slices:
                    outputs = next(iterator)[0]
                    batch = self._batch(outputs, part.stop - part.start)
                    self.consumed = orders.consumed_after(start, part.stop, self.num_shards)
                    yield batch
                self._expect_end(iterator)
                finished = True
            finally:
                if not finished:  # DALI has prefetched batches that no one will take
                    self.close()
        self.set_epoch(self.epoch + 1)
        if slices:  # reset by its end of epoch, the pipeline already runs the next one
            self._follows = (self.epoch, 0)

    def _open(self, start: int) -> DALIGenericIterator:
        if self._iterator is None or self._follows != (self.epoch, start):
            self.close()
            pipe = create_pipeline(self.dataset, self.batch_size, epoch=self.epoch, start=start,
                                   **self._options)
            self._iterator = DALIGenericIterator(pipe, list(self.fields), auto_reset=True,
                                                 last_batch_policy=LastBatchPolicy.PARTIAL)
        return self._iterator

    def _batch(self, outputs: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` rows (per-sample mode pads the last batch), in the field's dtype
        (bfloat16 and wide unsigned fields crossed DALI as signed integers of the same bits)."""
        batch = {}
        for name, tensor in outputs.items():
            rows = tensor[:n] if tensor.shape[0] != n else tensor
            wanted = self._dtypes[name]
            if rows.dtype != wanted and not rows.is_floating_point():  # normalised images are float
                rows = rows.view(wanted)
            batch[name] = rows
        return batch

    def _expect_end(self, iterator: DALIGenericIterator) -> None:
        """Takes DALI's end of epoch (the source's StopIteration), which also resets the pipeline."""
        try:
            next(iterator)
        except StopIteration:
            return
        self.close()
        msg = f"the DALI pipeline delivered more batches than epoch {self.epoch}'s share has"
        raise RuntimeError(msg)

    def __repr__(self) -> str:
        return (f"DALILoader(samples={self.samples}, batch_size={self.batch_size}, epoch={self.epoch}, "
                f"shard={self.shard_id}/{self.num_shards}, fields={list(self.fields)})")


def _torch_dtype(field: Field) -> torch.dtype:
    """The dtype :class:`pydata.Loader` hands out for ``field``."""
    if field.dtype == "bfloat16":
        return torch.bfloat16
    return torch.from_numpy(np.empty(0, field.storage_dtype)).dtype
