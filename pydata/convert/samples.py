"""Converting a folder of per-sample files (``.npy``, ``.pt``) into a dataset.

Each file holds one sample: a ``.npy`` file one array (stored under a field name the caller
chooses), a ``.pt`` file a dict of tensors (or plain numbers, str, bytes) or a single tensor,
loaded with ``torch.load(weights_only=True)`` so that no code in a file runs. The schema is
inferred by a first pass that reads only headers (``.npy`` memory-mapped, ``.pt`` with
``mmap=True``): every file must have the same fields and dtypes, and a field whose shape differs
between files is stored as variable-shape. The pass costs a second read of each file's header;
in return a dtype that changes halfway through fails before anything is written, naming the file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pydata.convert.parallel import DEFAULT_SHARD_BYTES, write_dataset
from pydata.errors import FormatError
from pydata.format.index import DatasetIndex
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter

__all__ = ["SAMPLE_SUFFIXES", "convert_sample_files", "infer_schema", "load_sample"]

SAMPLE_SUFFIXES = (".npy", ".pt", ".pth")


def convert_sample_files(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    field: str = "data",
    codecs: Mapping[str, str] | None = None,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool | None = None,
) -> DatasetIndex:
    """Converts a folder of per-sample ``.npy`` / ``.pt`` files into a dataset at ``out``.

    Samples are written in the order of the sorted file names. Files with other suffixes and
    hidden files are ignored; sub-folders are not searched.

    Args:
        src: The folder of sample files.
        out: The dataset directory to create.
        field: The field name of files that hold a single array or tensor.
        codecs: Field -> codec (one of ``pydata.CODECS``); the rest are stored ``raw``.
        workers: Processes writing in parallel (see :func:`pydata.convert.parallel.write_dataset`).
        shard_bytes: Target shard size.
        overwrite: Replace a dataset already at ``out``.
        progress: Show progress bars (default: when stderr is a terminal).

    Returns:
        The new dataset's index.

    Raises:
        FileNotFoundError: ``src`` is missing or holds no sample files.
        FormatError: A file that cannot be read, or whose fields, dtypes or kinds differ from
            the first file's (the message names the file and field); a codec for an unknown
            field or one that does not fit its dtype.
        FileExistsError: ``out`` holds a dataset and not ``overwrite``.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> src = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     np.save(src / f"{i}.npy", np.full((2, 2), i, np.float32))
        >>> convert_sample_files(src, src / "ds", progress=False).schema
        {'data': Field('float32', shape=(2, 2))}
    """
    files = list_sample_files(src)
    schema = infer_schema(files, field=field, codecs=codecs, progress=progress)
    return write_dataset(
        out, schema, [str(f) for f in files], functools.partial(_write_file, field=field),
        total=len(files), workers=workers, shard_bytes=shard_bytes, overwrite=overwrite,
        metadata={"source": "sample-files"}, progress=progress,
    )


def list_sample_files(src: str | os.PathLike[str]) -> list[Path]:
    """The sample files directly in ``src``, sorted by name.

    Raises:
        FileNotFoundError: ``src`` is missing, not a folder, or holds no sample files.
    """
    folder = Path(src)
    if not folder.is_dir():
        msg = f"sample folder '{folder}' does not exist or is not a directory"
        raise FileNotFoundError(msg)
    files = sorted(p for p in folder.iterdir()
                   if p.suffix in SAMPLE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        msg = f"no sample files ({', '.join(SAMPLE_SUFFIXES)}) in '{folder}'"
        raise FileNotFoundError(msg)
    return files


def load_sample(path: str | os.PathLike[str], field: str = "data", *, mmap: bool = False) -> dict[str, Any]:
    """One sample file as a dict of field -> value.

    Args:
        path: A ``.npy`` or ``.pt`` file.
        field: The field name for a file holding a single array or tensor.
        mmap: Map the data instead of reading it (enough to learn dtypes and shapes).

    Raises:
        FileNotFoundError: The file is missing.
        FormatError: The file cannot be parsed, or holds something other than an array, a
            tensor or a dict with string keys (the message names the file).
    """
    file = Path(path)
    try:
        if file.suffix == ".npy":
            value: Any = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        else:
            value = _load_torch(file, mmap)
    except OSError:
        raise
    except Exception as exc:  # numpy and torch raise many types for a damaged file
        msg = f"sample file '{file}': cannot be read: {exc}"
        raise FormatError(msg) from exc
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str) or not k]
        if bad:
            msg = f"sample file '{file}': keys must be non-empty strings, got {bad[:3]}"
            raise FormatError(msg)
        return value
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return {field: value}
    msg = f"sample file '{file}': holds a {type(value).__name__}; expected an array, a tensor or a dict of them"
    raise FormatError(msg)


def _load_torch(file: Path, mmap: bool) -> Any:
    import torch

    if mmap:
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            pass  # a legacy (non-zip) file cannot be mapped: read it
    return torch.load(file, map_location="cpu", weights_only=True)


def _describe(value: Any, where: str) -> tuple[str, tuple[int, ...] | None]:
    """The stored dtype name and shape of one value (shape None for bytes and str)."""
    if isinstance(value, (bool, np.bool_)):
        return "bool", ()
    if isinstance(value, int):
        return "int64", ()
    if isinstance(value, float):
        return "float64", ()
    if isinstance(value, str):
        return "str", None
    if isinstance(value, (bytes, bytearray)):
        return "bytes", None
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        try:
            dtype = Field(str(value.dtype)).dtype
        except FormatError as exc:
            msg = f"{where}: {exc}"
            raise FormatError(msg) from exc
        return dtype, tuple(int(d) for d in value.shape)
    msg = f"{where}: a {type(value).__name__} cannot be stored; expected an array, tensor, number, str or bytes"
    raise FormatError(msg)


def infer_schema(files: Sequence[str | os.PathLike[str]], *, field: str = "data",
                 codecs: Mapping[str, str] | None = None, progress: bool | None = None) -> dict[str, Field]:
    """The schema of a set of sample files, from a pass over their headers.

    Fields, kinds and dtypes come from the first file and must match in every other one; a
    field whose shape is the same in every file gets that fixed shape, otherwise a variable one.

    Raises:
        FormatError: A file whose fields or dtypes differ (names it, the field and the first
            file); a codec for an unknown field, or one that does not fit its dtype.
    """
    first: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    fixed: dict[str, bool] = {}
    for i, file in enumerate(tqdm(files, desc="reading schema", unit="file", leave=False,
                                  disable=None if progress is None else not progress)):
        sample = load_sample(file, field, mmap=True)
        described = {k: _describe(v, f"sample file '{file}', field '{k}'") for k, v in sample.items()}
        if i == 0:
            first, fixed = described, dict.fromkeys(described, True)
            continue
        _check_like_first(described, first, fixed, str(file), str(files[0]))
    return _schema(first, fixed, dict(codecs or {}))


def _check_like_first(described: dict[str, tuple[str, tuple[int, ...] | None]],
                      first: dict[str, tuple[str, tuple[int, ...] | None]],
                      fixed: dict[str, bool], file: str, first_file: str) -> None:
    if list(described) != list(first):
        msg = f"sample file '{file}': fields {sorted(described)} differ from those of '{first_file}': {sorted(first)}"
        raise FormatError(msg)
    for name, (dtype, shape) in described.items():
        if dtype != first[name][0]:
            msg = f"sample file '{file}', field '{name}': dtype {dtype}, but '{first_file}' has {first[name][0]}"
            raise FormatError(msg)
        if shape != first[name][1]:
            fixed[name] = False


def _schema(described: dict[str, tuple[str, tuple[int, ...] | None]], fixed: dict[str, bool],
            codecs: dict[str, str]) -> dict[str, Field]:
    unknown = [name for name in codecs if name not in described]
    if unknown:
        msg = f"codec given for unknown field(s) {unknown}; the fields are {list(described)}"
        raise FormatError(msg)
    schema = {}
    for name, (dtype, shape) in described.items():
        try:
            schema[name] = Field(dtype, shape if fixed[name] else None, codecs.get(name, "raw"))
        except FormatError as exc:
            msg = f"field '{name}': {exc}"
            raise FormatError(msg) from exc
    return schema


def _write_file(writer: ShardWriter, file: str, *, field: str) -> int:
    """Writes one sample file (a job of :func:`write_dataset`)."""
    sample = load_sample(file, field)
    try:
        writer.write(sample)
    except FormatError as exc:
        msg = f"sample file '{file}': {exc}"
        raise FormatError(msg) from exc
    return 1
