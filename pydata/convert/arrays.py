"""Converting whole ``.npy`` arrays, one per field, into a dataset.

Each array holds every sample along its first dimension (``images.npy`` of shape
``(n, 3, 64, 64)``, ``labels.npy`` of shape ``(n,)``). The arrays are memory-mapped, never loaded
whole, and written in chunks of rows with :meth:`pydata.ShardWriter.write_batch`, so an array
larger than memory converts in constant memory; the trade-off is that the files must be plain
``.npy`` (not ``.npz`` or pickled object arrays), which is what makes them mappable.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pydata.convert.parallel import DEFAULT_SHARD_BYTES, write_dataset
from pydata.errors import FormatError
from pydata.format.index import DatasetIndex
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter

__all__ = ["convert_arrays", "open_array"]

CHUNK_BYTES = 16 << 20  # rows written per write_batch call, in bytes of all fields together


def convert_arrays(
    out: str | os.PathLike[str],
    arrays: Mapping[str, str | os.PathLike[str]],
    *,
    codecs: Mapping[str, str] | None = None,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool | None = None,
) -> DatasetIndex:
    """Converts ``.npy`` arrays with a leading sample dimension into a dataset at ``out``.

    Field ``name`` of sample ``i`` is ``np.load(arrays[name])[i]``; its dtype is the array's and
    its fixed shape the array's shape without the first dimension.

    Args:
        out: The dataset directory to create.
        arrays: Field name -> path of a ``.npy`` file; all must have the same first dimension.
        codecs: Field -> codec (one of ``pydata.CODECS``); the rest are stored ``raw``.
        workers: Processes writing in parallel (see :func:`pydata.convert.parallel.write_dataset`).
        shard_bytes: Target shard size.
        overwrite: Replace a dataset already at ``out``.
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        The new dataset's index.

    Raises:
        FileNotFoundError: An array file is missing (named).
        FormatError: No arrays; a file that is not a plain ``.npy`` array, a 0-d array, or first
            dimensions that differ (the message names the fields and their lengths); a codec
            for an unknown field or one that does not fit its dtype.
        FileExistsError: ``out`` holds a dataset and not ``overwrite``.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> np.save(tmp / "x.npy", np.zeros((10, 4), np.float32))
        >>> np.save(tmp / "y.npy", np.arange(10))
        >>> convert_arrays(tmp / "ds", {"x": tmp / "x.npy", "y": tmp / "y.npy"}, progress=False).samples
        10
    """
    if not arrays:
        msg = "no arrays given: expected field name -> .npy path"
        raise FormatError(msg)
    paths = {name: str(Path(p).resolve()) for name, p in arrays.items()}
    opened = {name: open_array(p, name) for name, p in paths.items()}
    lengths = {name: a.shape[0] for name, a in opened.items()}
    if len(set(lengths.values())) > 1:
        msg = f"the arrays differ in their first (sample) dimension: {lengths}"
        raise FormatError(msg)
    schema = _schema(opened, dict(codecs or {}))
    samples = next(iter(lengths.values()))
    row_bytes = sum(a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)) for a in opened.values())
    # Chunks of about CHUNK_BYTES, and at least one per worker.
    step = max(1, min(CHUNK_BYTES // max(row_bytes, 1), -(-samples // max(workers, 1))))
    chunks = [(start, min(start + step, samples)) for start in range(0, samples, step)]
    metadata = {"source": "npy-arrays", "arrays": {name: Path(p).name for name, p in paths.items()}}
    try:
        return write_dataset(out, schema, chunks, functools.partial(_write_rows, paths=paths),
                             total=samples, workers=workers, shard_bytes=shard_bytes,
                             overwrite=overwrite, metadata=metadata, progress=progress)
    finally:
        open_array.cache_clear()  # unmap the sources


@functools.lru_cache(maxsize=64)
def open_array(path: str, name: str = "") -> np.ndarray[Any, Any]:
    """The ``.npy`` file at ``path``, memory-mapped read-only (cached per process).

    Raises:
        FileNotFoundError: The file is missing (names it and the field).
        FormatError: Not a plain ``.npy`` array of at least one dimension.
    """
    where = f"array file '{path}'" + (f" (field '{name}')" if name else "")
    if not Path(path).is_file():
        msg = f"{where} does not exist"
        raise FileNotFoundError(msg)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        msg = f"{where}: not a readable .npy array: {exc}"
        raise FormatError(msg) from exc
    if not isinstance(array, np.ndarray):
        array.close()  # an NpzFile holds its file open
        msg = f"{where}: holds a {type(array).__name__}, not an array (.npz archives are not supported)"
        raise FormatError(msg)
    if array.ndim == 0:
        msg = f"{where}: a 0-d array has no sample dimension"
        raise FormatError(msg)
    return array


def _schema(arrays: Mapping[str, np.ndarray[Any, Any]], codecs: dict[str, str]) -> dict[str, Field]:
    unknown = [name for name in codecs if name not in arrays]
    if unknown:
        msg = f"codec given for unknown field(s) {unknown}; the fields are {list(arrays)}"
        raise FormatError(msg)
    schema = {}
    for name, array in arrays.items():
        try:
            schema[name] = Field(array.dtype, array.shape[1:], codecs.get(name, "raw"))
        except FormatError as exc:
            msg = f"field '{name}': {exc}"
            raise FormatError(msg) from exc
    return schema


def _write_rows(writer: ShardWriter, rows: tuple[int, int], *, paths: dict[str, str]) -> int:
    """Writes rows ``[start, stop)`` of every array (a job of :func:`write_dataset`)."""
    start, stop = rows
    writer.write_batch({name: open_array(p, name)[start:stop] for name, p in paths.items()})
    return stop - start
