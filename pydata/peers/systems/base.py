"""What every benchmarked system provides: a conversion of the source and a reader of epochs.

A system is a small class; the harness runs each method in a subprocess of its own. Readers
yield batches in one neutral form, a dict of numpy arrays (lists of arrays for variable-length
fields), so one correctness check covers every system; turning a peer's tensors into that form
is a view, not a copy, wherever the peer allows it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pydata.format.ragged import Ragged
from pydata.peers.workloads import Source, U64, WORKLOADS

__all__ = ["Batch", "Reader", "RunContext", "System", "iterate", "load_system", "numpy_batch"]

Batch = dict[str, Any]
LOCAL_SETTINGS = ("hot", "cold")
ALL_SETTINGS = ("hot", "cold", "s3")


@dataclass
class RunContext:
    """Where and how one run reads.

    Attributes:
        data: The system's converted data on local disk.
        workload: The workload's name.
        setting: ``"hot"``, ``"cold"`` or ``"s3"``.
        variant: Workers (DataLoader-style systems) or threads.
        batch: Samples per batch.
        seed: Seed of the shuffle.
        remote: The data's URL on the S3 server (``s3`` setting only).
        endpoint: The S3 server's URL (``s3`` setting only).
        cache: A fresh, empty cache directory for this epoch (``s3`` setting only).
        scratch: A directory the run may use.
        notes: What the system did that a reader of the figures must know (filled by systems).
    """

    data: Path
    workload: str
    setting: str
    variant: int
    batch: int
    seed: int
    scratch: Path
    remote: str = ""
    endpoint: str = ""
    cache: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for the S3 server (the harness sets the dummy credentials)."""
        return {"key": "testing", "secret": "testing",
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}


class Reader(ABC):
    """One epoch at a time over a system's data."""

    @abstractmethod
    def batches(self) -> Iterable[Batch]:
        """The batches of one shuffled epoch, in the neutral form (see the module docstring)."""

    def close(self) -> None:
        """Releases maps, files and worker processes (before a cold epoch drops the cache)."""


class System(ABC):
    """A way of feeding PyTorch that the harness benchmarks.

    Attributes:
        name: The row name in the table.
        family: ``"baseline"``, ``"peer"`` or ``"pydata"``.
        variant_kind: ``"workers"`` or ``"threads"``.
        variants: The worker or thread counts to run.
        settings: The settings it runs in.
        workloads: The workloads it runs.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    variant_kind: ClassVar[str] = "workers"
    variants: ClassVar[tuple[int, ...]] = (0, 2)
    settings: ClassVar[tuple[str, ...]] = LOCAL_SETTINGS
    workloads: ClassVar[tuple[str, ...]] = tuple(WORKLOADS)

    def available(self) -> str:
        """Why this system cannot run here ("" when it can): a missing package, a failed import."""
        return ""

    @abstractmethod
    def convert(self, source: Source, out: Path) -> None:
        """Writes the source in this system's format under ``out`` (an empty directory)."""

    @abstractmethod
    def open(self, ctx: RunContext) -> Reader:
        """A reader of the data in ``ctx`` (local ``ctx.data``, or ``ctx.remote`` for ``s3``)."""

    def expected(self, source: Source) -> U64:
        """The fingerprints a correct epoch delivers (the source's; lossy codecs override)."""
        return source.fingerprints()

    def notes(self) -> list[str]:
        """What the table must say about how this system was set up (stand-ins, patches)."""
        return []


def numpy_batch(batch: Mapping[str, Any]) -> Batch:
    """A batch of torch tensors (or lists of them, or pydata.Ragged) as numpy views."""
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, list):
            out[key] = [np.asarray(v) for v in value]
        elif isinstance(value, Ragged):
            out[key] = value.map(np.asarray)
        else:
            out[key] = np.asarray(value)
    return out


def iterate(loader: Iterable[Mapping[str, Any]]) -> Iterator[Batch]:
    """The batches of a loader of torch batches, as numpy."""
    for batch in loader:
        yield numpy_batch(batch)


def _from_file(path: str) -> Any:
    module_name = f"pydata_peers_plugin_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import a system plugin from {path!r}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_system(spec: str) -> System:
    """The system named ``spec``: ``"module:Class"`` or ``"/path/to/file.py:Class"``.

    Raises:
        ValueError: ``spec`` has no ``:`` or names something that is not a System.
        ImportError: The module cannot be imported.
    """
    where, sep, attr = spec.rpartition(":")
    if not sep or not where:
        msg = f"a system is 'module:Class' or 'file.py:Class', got {spec!r}"
        raise ValueError(msg)
    module = _from_file(where) if where.endswith(".py") else importlib.import_module(where)
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, System)):
        msg = f"{spec!r} is not a pydata.peers System subclass"
        raise ValueError(msg)
    return cls()
