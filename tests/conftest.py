"""Fixtures shared by the whole suite."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def gc_tester() -> Iterator[Callable[[Any], None]]:
    """Registers objects whose reference cycles must be collectable, and checks at teardown.

    Use it for objects that keep C++ resources alive (mapped files behind numpy views): after
    the test drops them, a full collection must free every registered object.
    """
    import weakref

    refs: list[weakref.ref[Any]] = []

    def register(obj: Any) -> None:
        refs.append(weakref.ref(obj))

    yield register
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"objects still alive after collection: {alive!r}"
