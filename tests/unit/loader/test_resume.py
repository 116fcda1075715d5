"""Loader.state_dict / load_state_dict: a resumed loader continues exactly where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pydata


@pytest.mark.parametrize("midpoint", [1, 4, 9])
@pytest.mark.parametrize(("threads", "resumed_threads"), [(1, 1), (1, 2), (2, 1)])
def test_resume_equivalence(dataset: Any, midpoint: int, threads: int, resumed_threads: int,
                            assert_resume_equivalent: Callable[..., None]) -> None:
    assert_resume_equivalent(
        lambda: pydata.Loader(dataset, 32, seed=5, num_threads=threads),
        midpoint,
        lambda: pydata.Loader(dataset, 32, seed=5, num_threads=resumed_threads),
    )


def test_resume_in_a_later_epoch(dataset: Any, assert_resume_equivalent: Callable[..., None]) -> None:
    def make() -> Any:
        loader = pydata.Loader(dataset, 20, seed=1)
        loader.set_epoch(3)
        return loader

    assert_resume_equivalent(make, 6)


def test_state_survives_a_round_trip_through_torch_save(dataset: Any, tmp_path: Any) -> None:
    import torch

    loader = pydata.Loader(dataset, 10)
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    torch.save(loader.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state == loader.state_dict() and state["consumed"] == 30


@pytest.mark.parametrize(("world", "new_world"), [(2, 3), (3, 1), (4, 2)])
def test_elastic_resume_onto_another_world_size(dataset: Any, world: int, new_world: int) -> None:
    """Ranks stop after k batches, and the state continues on new_world ranks: no sample is
    read twice, and only the epoch's uneven tail (fewer than new_world samples) is left."""
    first: list[int] = []
    states = []
    for rank in range(world):
        loader = pydata.Loader(dataset, 8, rank=rank, world_size=world)
        iterator = iter(loader)
        for _ in range(3):
            first.extend(next(iterator)["label"].tolist())
        iterator.close()
        states.append(loader.state_dict())
    assert all(s == states[0] for s in states)  # every rank agrees on the global position
    second: list[int] = []
    for rank in range(new_world):
        loader = pydata.Loader(dataset, 8, rank=rank, world_size=new_world)
        loader.load_state_dict(states[0])
        second.extend(i for b in loader for i in b["label"].tolist())
    everything = first + second
    assert len(everything) == len(set(everything))
    remaining = 301 - states[0]["consumed"]
    assert len(second) == remaining - remaining % new_world


def test_state_of_another_dataset_is_refused(dataset: Any) -> None:
    loader = pydata.Loader(dataset, 10)
    state = loader.state_dict() | {"num_samples": 5}
    with pytest.raises(ValueError, match="num_samples"):
        loader.load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        pydata.Loader(dataset, 10, seed=9).load_state_dict(loader.state_dict())


def test_resumed_batches_have_the_same_content(dataset: Any) -> None:
    full = [b["image"].clone() for b in pydata.Loader(dataset, 50, seed=2)]
    loader = pydata.Loader(dataset, 50, seed=2)
    iterator = iter(loader)
    next(iterator)
    iterator.close()
    resumed = pydata.Loader(dataset, 50, seed=2)
    resumed.load_state_dict(loader.state_dict())
    rest = [b["image"] for b in resumed]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(full[1:], rest, strict=True))
