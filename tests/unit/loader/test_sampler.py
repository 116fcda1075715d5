"""EpochSampler: pydata's order and rank shares for the torch DataLoader path."""

from __future__ import annotations

import pytest

from pydata.datasets.order import epoch_order
from pydata.loader.sampler import EpochSampler


def test_yields_the_rank_share_of_the_epoch_order() -> None:
    order = epoch_order(23, seed=4, epoch=0).tolist()
    shares = [list(EpochSampler(23, seed=4, rank=r, world_size=3)) for r in range(3)]
    assert shares == [order[r:21:3] for r in range(3)]
    assert len(EpochSampler(23, rank=0, world_size=3)) == 7


def test_epochs_advance_by_themselves_and_set_epoch_selects_one() -> None:
    sampler = EpochSampler(50, seed=1)
    first, second = list(sampler), list(sampler)
    assert first != second and sorted(first) == sorted(second) == list(range(50))
    sampler.set_epoch(0)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) == second


def test_without_shuffle_the_order_is_the_index_order() -> None:
    assert list(EpochSampler(6, shuffle=False)) == list(range(6))


def test_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, rank=2, world_size=2)
