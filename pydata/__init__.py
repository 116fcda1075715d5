"""pydata: a dataset engine for PyTorch training with a compiled C++ core.

The names below are the public API. The compiled core (``pydata._core``) is re-exported here:
``RingBuffer``, ``MappedFile``, the batch gather (``FixedSections``, ``IndexedSections``,
``gather_rows``, ``gather_ranges``), the tensor codecs (``encode``, ``decode``,
``decode_batch``, ``blob_info``, ``quantization_error``, ``CODECS``) and ``checksum``.
The dataset format (``Field``, ``ShardWriter``, ``merge_index``, ``read_index``, and ``Ragged``,
the batch of variable-shape rows) needs no torch;
the torch-facing names (``MemoryMappedDataset``, ``Loader``, ``create_dataloader``, ``collate``)
are imported on first use, so importing pydata does not import torch, s3fs or DALI. So is the
seeded train/validation split (``split_dataset``, ``DatasetSplit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# errors first: the compiled core imports pydata.errors while it initialises.
from pydata import errors
from pydata.errors import (
    AuditError,
    ClosedError,
    CorruptDataError,
    FormatError,
    PydataError,
    RemoteError,
    WaitTimeoutError,
)

from pydata._core import (  # noqa: E402  (after errors, on purpose)
    CODECS,
    FixedSections,
    IndexedSections,
    MappedFile,
    RingBuffer,
    blob_info,
    checksum,
    decode,
    decode_batch,
    encode,
    gather_ranges,
    gather_rows,
    quantization_error,
)

from pydata.format import Field, ShardWriter, merge_index, read_index  # noqa: E402
from pydata.format.ragged import Ragged  # noqa: E402

__version__ = "0.1.0"

# Names whose modules import torch: resolved on first attribute access (PEP 562).
_LAZY = {
    "DatasetSplit": "pydata.datasets.split",
    "LatentCache": "pydata.latents",
    "Loader": "pydata.loader.loader",
    "MemoryMappedDataset": "pydata.datasets.mmap",
    "StreamingDataset": "pydata.datasets.streaming",
    "collate": "pydata.datasets.batch",
    "create_dataloader": "pydata.loader.dataloader",
    "split_dataset": "pydata.datasets.split",
    "transforms": "pydata.loader.transforms",  # the module itself
}

if TYPE_CHECKING:
    from pydata.datasets.batch import collate
    from pydata.datasets.mmap import MemoryMappedDataset
    from pydata.datasets.split import DatasetSplit, split_dataset
    from pydata.datasets.streaming import StreamingDataset
    from pydata.latents import LatentCache
    from pydata.loader import transforms
    from pydata.loader.dataloader import create_dataloader
    from pydata.loader.loader import Loader


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'pydata' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    imported = importlib.import_module(module)
    value = imported if module.endswith("." + name) else getattr(imported, name)
    globals()[name] = value
    return value


__all__ = [
    "AuditError",
    "CODECS",
    "ClosedError",
    "CorruptDataError",
    "DatasetSplit",
    "Field",
    "FixedSections",
    "FormatError",
    "IndexedSections",
    "LatentCache",
    "Loader",
    "MappedFile",
    "MemoryMappedDataset",
    "PydataError",
    "Ragged",
    "RemoteError",
    "RingBuffer",
    "ShardWriter",
    "StreamingDataset",
    "WaitTimeoutError",
    "__version__",
    "blob_info",
    "checksum",
    "collate",
    "create_dataloader",
    "decode",
    "decode_batch",
    "encode",
    "errors",
    "gather_ranges",
    "gather_rows",
    "merge_index",
    "quantization_error",
    "read_index",
    "split_dataset",
    "transforms",
]
