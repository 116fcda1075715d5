"""Converting the CIFAR-10 python archive (``cifar-10-python.tar.gz``) into two datasets.

The archive holds ``cifar-10-batches-py/`` with five training batches, a test batch and
``batches.meta``, each a pickled dict. They become ``OUT/train`` (50,000 samples) and ``OUT/test``
(10,000), with ``image`` (uint8, ``(3, 32, 32)``, RGB) and ``label`` (int64), and the class names
in the index metadata under ``classes``, as :func:`pydata.convert.convert_image_folder` stores
them.

The batches are pickles, and a pickle can run any code while it loads. They are therefore read
with an unpickler that resolves only the globals a pickled numpy array names and rejects anything
else with an error that names the member. The trade-off: a re-pickled archive that holds other
objects (numpy scalars, for one) is refused, not guessed at. The whole archive is read and
checked before anything is written, so a damaged archive leaves no half-written dataset; the price
is memory (370 MB peak resident for a full-size archive).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pydata.convert.parallel import DEFAULT_SHARD_BYTES, write_dataset
from pydata.errors import FormatError
from pydata.format.index import INDEX_NAME, DatasetIndex
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter

__all__ = ["ARCHIVE_DIR", "SPLITS", "convert_cifar10"]

ARCHIVE_DIR = "cifar-10-batches-py"
SPLITS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
CHUNK_ROWS = 1000  # rows per write_batch call, and the unit that workers split



def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals that pickled numpy arrays name, mapped to numpy's own functions.

    The functions are taken from numpy's reductions rather than imported by name: the published
    archive names ``numpy.core.multiarray._reconstruct`` (numpy 1), which numpy 2 keeps only as a
    deprecated alias of ``numpy._core``; both spellings are accepted. Protocol 5 (the default
    from Python 3.14) rebuilds arrays with ``_frombuffer`` instead.
    """
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype}
    sample = np.empty(1, dtype=np.uint8)
    for reduced in (sample.__reduce__(), sample.__reduce_ex__(5)):
        function: Any = reduced[0]
        for old, new in (("numpy.core.", "numpy._core."), ("numpy._core.", "numpy.core.")):
            allowed[function.__module__.replace(old, new), function.__name__] = function
    return allowed


_ALLOWED_GLOBALS = _numpy_globals()


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler for plain containers and numpy arrays, which refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            msg = (f"the pickle asks for '{module}.{name}', and a CIFAR-10 batch needs only numpy "
                   f"arrays ({', '.join(f'{m}.{n}' for m, n in _ALLOWED_GLOBALS)}); refusing it")
            raise pickle.UnpicklingError(msg)
        return allowed


def convert_cifar10(
    archive: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, DatasetIndex]:
    """Converts the CIFAR-10 python archive into the datasets ``out/train`` and ``out/test``.

    Sample ``i`` of a split is row ``i`` of its batches in order (``data_batch_1`` .. ``_5``
    for train), with the row's 3072 bytes as a ``(3, 32, 32)`` image.

    Args:
        archive: ``cifar-10-python.tar.gz`` (any tar compression is accepted).
        out: The folder that receives ``train/`` and ``test/``.
        workers: Processes writing in parallel (see :func:`pydata.convert.parallel.write_dataset`).
        shard_bytes: Target shard size.
        overwrite: Replace datasets already at ``out/train`` and ``out/test``.
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        ``{"train": index, "test": index}``; ``index.metadata["classes"]`` lists the class names
        by label.

    Raises:
        FileNotFoundError: ``archive`` is missing.
        FormatError: ``archive`` is not a tar archive, lacks a member, or a member is not the
            expected pickle (a refused global, a missing key, wrong shapes or dtypes, a label
            out of range); the message names the archive and the member.
        FileExistsError: ``out/train`` or ``out/test`` holds a dataset and not ``overwrite``.
    """
    path = Path(archive)
    members = _read_members(path)
    classes = _class_names(path, members[META])
    splits = {split: _load_split(path, members, names, len(classes))
              for split, names in SPLITS.items()}
    for split in SPLITS:  # checked for both before writing either, so as not to write half of OUT
        if not overwrite and (Path(out) / split / INDEX_NAME).exists():
            msg = (f"output '{Path(out) / split}' already holds a dataset; pass overwrite=True "
                   "(--overwrite) to replace it")
            raise FileExistsError(msg)
    schema = {"image": Field("uint8", IMAGE_SHAPE), "label": Field("int64", ())}
    indexes = {}
    for split, (images, labels) in splits.items():
        jobs = [(images[i:i + CHUNK_ROWS], labels[i:i + CHUNK_ROWS])
                for i in range(0, len(labels), CHUNK_ROWS)]
        indexes[split] = write_dataset(
            Path(out) / split, schema, jobs, _write_chunk, total=len(labels), workers=workers,
            shard_bytes=shard_bytes, overwrite=overwrite, progress=progress,
            metadata={"source": "cifar10", "split": split, "classes": classes})
    return indexes


def _read_members(archive: Path) -> dict[str, bytes]:
    """The bytes of every member the conversion needs, by name without the folder, in one pass."""
    if not archive.is_file():
        msg = f"CIFAR-10 archive '{archive}' does not exist or is not a file"
        raise FileNotFoundError(msg)
    wanted = {f"{ARCHIVE_DIR}/{name}": name for names in SPLITS.values() for name in names}
    wanted[f"{ARCHIVE_DIR}/{META}"] = META
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                file = tar.extractfile(member)
                if file is None:
                    msg = f"CIFAR-10 archive '{archive}': member '{member.name}' is not a file"
                    raise FormatError(msg)
                found[name] = file.read()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        msg = f"'{archive}' is not a readable CIFAR-10 archive (a tar.gz of {ARCHIVE_DIR}/): {exc}"
        raise FormatError(msg) from exc
    missing = [f"{ARCHIVE_DIR}/{name}" for name in wanted.values() if name not in found]
    if missing:
        kind = "is not the CIFAR-10 python archive" if not found else "is incomplete"
        msg = f"'{archive}' {kind}: no member {', '.join(repr(m) for m in missing)}"
        raise FormatError(msg)
    return found


def _unpickle(archive: Path, name: str, data: bytes) -> dict[str, Any]:
    """Loads one member (a pickled dict, Python 2 strings read as bytes); keys become str."""
    where = f"CIFAR-10 archive '{archive}' member '{ARCHIVE_DIR}/{name}'"
    try:
        loaded = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a damaged pickle can fail with almost any type
        msg = f"{where}: cannot be unpickled: {exc}"
        raise FormatError(msg) from exc
    if not isinstance(loaded, dict):
        msg = f"{where}: expected a pickled dict, got {type(loaded).__name__}"
        raise FormatError(msg)
    return {key.decode("latin-1") if isinstance(key, bytes) else str(key): value
            for key, value in loaded.items()}


def _class_names(archive: Path, data: bytes) -> list[str]:
    meta = _unpickle(archive, META, data)
    names = meta.get("label_names")
    if not (isinstance(names, list) and names and all(isinstance(n, (bytes, str)) for n in names)):
        msg = (f"CIFAR-10 archive '{archive}' member '{ARCHIVE_DIR}/{META}': expected "
               f"'label_names', a non-empty list of strings, got {names!r:.80}")
        raise FormatError(msg)
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def _load_split(archive: Path, members: dict[str, bytes], names: tuple[str, ...],
                classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[n, 3, 32, 32]`` (uint8) and labels ``[n]`` (int64) of a split's batches."""
    # Each member's bytes are dropped once unpickled, so the archive is not held twice.
    batches = [_load_batch(archive, name, members.pop(name), classes) for name in names]
    return (np.concatenate([images for images, _ in batches]),
            np.concatenate([labels for _, labels in batches]))


def _load_batch(archive: Path, name: str, data: bytes,
                classes: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"CIFAR-10 archive '{archive}' member '{ARCHIVE_DIR}/{name}'"
    batch = _unpickle(archive, name, data)
    if "data" not in batch or "labels" not in batch:
        msg = f"{where}: expected keys 'data' and 'labels', found {sorted(batch)}"
        raise FormatError(msg)
    images, labels = batch["data"], batch["labels"]
    row = int(np.prod(IMAGE_SHAPE))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (row,):
        got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
               else type(images).__name__)
        msg = f"{where}: 'data' must be a uint8 array of shape (n, {row}), got {got}"
        raise FormatError(msg)
    array = np.asarray(labels) if isinstance(labels, list) else np.empty((0, 0))
    if array.shape != (len(images),) or (array.size and array.dtype.kind not in "iu"):
        msg = f"{where}: 'labels' must be a list of {len(images)} integers (one per row of 'data')"
        raise FormatError(msg)
    bad = np.flatnonzero((array < 0) | (array >= classes))
    if bad.size:
        msg = f"{where}: row {bad[0]} has label {array[bad[0]]}, expected 0..{classes - 1}"
        raise FormatError(msg)
    return images.reshape(-1, *IMAGE_SHAPE), array.astype(np.int64)


def _write_chunk(writer: ShardWriter, job: tuple[np.ndarray, np.ndarray]) -> int:
    """Writes one chunk of rows (a job of write_dataset)."""
    images, labels = job
    writer.write_batch({"image": images, "label": labels})
    return len(labels)
