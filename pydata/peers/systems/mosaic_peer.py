"""MosaicML Streaming, as its docs set it up: ``MDSWriter`` shards (64 MiB, its default), then
``StreamingDataset(local=..., batch_size=..., shuffle=True)`` (or ``remote="s3://..."`` with an
empty ``local`` cache) in a torch ``DataLoader`` with the same batch size.

mosaicml-streaming imports torchvision when it is imported (for its vision datasets). Where the
installed torchvision does not load against the installed torch (the registry's build against
the CPU torch), a minimal stand-in module with the two names it imports (``VisionDataset``,
``to_tensor``) lets it import; the benchmark never calls them, and the output says so.
"""

from __future__ import annotations

import importlib
import sys
import traceback
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pydata.peers.systems.base import ALL_SETTINGS, Batch, Reader, RunContext, System, iterate
from pydata.peers.workloads import Source, WORKLOADS

__all__ = ["MosaicStreaming"]

STAND_IN = ("mosaicml-streaming imports torchvision at import time and the installed torchvision does not "
            "load against this torch: a minimal stand-in module (torchvision.datasets.VisionDataset, "
            "torchvision.transforms.functional.to_tensor) was used")
_STAND_IN_USED = False


def _stand_in_torchvision() -> None:
    """Registers a ``torchvision`` with only the two names mosaicml-streaming imports."""
    from torch.utils.data import Dataset

    def to_tensor(pic: Any) -> Any:  # torchvision's: HxWxC uint8 -> CxHxW float in [0, 1]
        import numpy as np
        import torch

        array = np.asarray(pic)
        tensor = torch.from_numpy(array.reshape(*array.shape[:2], -1).transpose(2, 0, 1).copy())
        return tensor.float().div_(255) if array.dtype == np.uint8 else tensor.float()

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "streaming"))]:
        del sys.modules[name]
    root, datasets = types.ModuleType("torchvision"), types.ModuleType("torchvision.datasets")
    transforms, functional = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.transforms.functional")
    datasets.VisionDataset = type("VisionDataset", (Dataset,), {})  # type: ignore[attr-defined]
    functional.to_tensor = to_tensor  # type: ignore[attr-defined]
    root.datasets, root.transforms, transforms.functional = datasets, transforms, functional  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": root, "torchvision.datasets": datasets,
                        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional})


def _streaming() -> Any:
    """``import streaming``, with the torchvision stand-in when the real one fails to load."""
    global _STAND_IN_USED
    try:
        return importlib.import_module("streaming")
    except (ImportError, RuntimeError, OSError) as exc:
        if "torchvision" not in "".join(traceback.format_exception(exc)):
            raise
    _stand_in_torchvision()
    _STAND_IN_USED = True
    return importlib.import_module("streaming")


def _column(dtype: str, shape: tuple[int, ...] | None) -> str:
    if shape == ():
        return dtype
    return f"ndarray:{dtype}" + (f":{','.join(map(str, shape))}" if shape is not None else "")


class _Reader(Reader):
    def __init__(self, dataset: Any, loader: Any, streaming: Any) -> None:
        self.dataset, self.loader, self.streaming = dataset, loader, streaming

    def batches(self) -> Iterable[Batch]:
        return iterate(self.loader)

    def close(self) -> None:
        self.loader = self.dataset = None
        self.streaming.base.util.clean_stale_shared_memory()


class MosaicStreaming(System):
    """MosaicML Streaming (``mosaicml-streaming``): MDS shards, its StreamingDataset, torch DataLoader."""

    name = "MosaicML Streaming"
    family = "peer"
    settings: ClassVar[tuple[str, ...]] = ALL_SETTINGS

    def available(self) -> str:
        try:
            _streaming()
        except Exception as exc:  # noqa: BLE001  (any import failure is the reason reported)
            return f"mosaicml-streaming cannot be imported: {type(exc).__name__}: {exc}"
        return ""

    def notes(self) -> list[str]:
        return [STAND_IN] if _STAND_IN_USED else []

    def convert(self, source: Source, out: Path) -> None:
        streaming = _streaming()
        columns = {s.name: _column(s.dtype, s.shape) for s in source.specs}
        with streaming.MDSWriter(out=str(out), columns=columns, size_limit=64 << 20) as writer:
            for start in range(0, source.count, 4096):
                batch = source.batch(np.arange(start, min(start + 4096, source.count)))
                for i in range(len(next(iter(batch.values())))):
                    writer.write({name: np.asarray(values[i]) for name, values in batch.items()})

    def open(self, ctx: RunContext) -> Reader:
        from torch.utils.data import DataLoader

        from pydata.peers.systems.baselines import collate_for

        streaming = _streaming()
        where = ({"remote": ctx.remote, "local": str(ctx.cache)} if ctx.setting == "s3"
                 else {"local": str(ctx.data)})
        dataset = streaming.StreamingDataset(**where, batch_size=ctx.batch, shuffle=True, shuffle_seed=ctx.seed)
        loader = DataLoader(dataset, batch_size=ctx.batch, num_workers=ctx.variant,
                            persistent_workers=ctx.variant > 0, collate_fn=collate_for(WORKLOADS[ctx.workload]))
        if _STAND_IN_USED:
            ctx.notes.append(STAND_IN)
        return _Reader(dataset, loader, streaming)
