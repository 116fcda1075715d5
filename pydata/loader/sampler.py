"""EpochSampler: pydata's epoch order and rank partition as a torch ``Sampler``.

For the torch DataLoader path (:func:`pydata.create_dataloader`): the same order and the same
disjoint, equal, strided rank shares as :class:`pydata.Loader` (:mod:`pydata.datasets.order`),
so switching between the two loaders does not change which samples a rank sees. Unlike torch's
``DistributedSampler`` it never pads with repeated samples: the epoch's uneven tail (fewer than
``world_size`` samples) is left out instead, a different one each epoch when shuffling.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from pydata.datasets import order as orders

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Yields this rank's share of an epoch's order.

    Args:
        num_samples: Samples in the dataset.
        shuffle: Shuffle every epoch.
        seed: Seed of the order.
        rank, world_size: Default: torch.distributed, else RANK/WORLD_SIZE, else 0 of 1.

    Example:
        >>> list(EpochSampler(10, shuffle=False, rank=1, world_size=3))
        [1, 4, 7]
    """

    def __init__(self, num_samples: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size = orders.resolve_rank_world(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration yields (as DistributedSampler).
        Without it, each iteration moves on to the next epoch by itself."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = orders.epoch_order(self.num_samples, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        share = orders.rank_share(order, start=0, rank=self.rank, world_size=self.world_size)
        return iter(share.tolist())

    def __len__(self) -> int:
        return orders.per_rank_count(self.num_samples, start=0, world_size=self.world_size)
