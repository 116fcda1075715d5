"""pydata.convert.cifar10: archives in the published format (Python 2 pickles, written here
opcode by opcode) round-trip into train/test datasets; the restricted unpickler refuses foreign
globals; damaged archives are named with their member."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata.convert.cifar10 import ARCHIVE_DIR, convert_cifar10

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- archives in the published format ------------------------------------------------------------


def _py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled as Python 2's cPickle wrote the CIFAR-10 batches (protocol 2, str as
    BINSTRING, arrays through ``numpy.core.multiarray._reconstruct``)."""
    out = bytearray(b"\x80\x02")
    _emit(out, obj)
    return bytes(out + b".")


def _emit(out: bytearray, obj: Any) -> None:
    if isinstance(obj, dict):
        out += b"}("
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
        out += b"u"
    elif isinstance(obj, list):
        out += b"]("
        for item in obj:
            _emit(out, item)
        out += b"e"
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(out, item)
        out += b"t"
    elif isinstance(obj, bytes):
        out += b"T" + struct.pack("<i", len(obj)) + obj
    elif obj is None or isinstance(obj, bool):
        out += {None: b"N", False: b"\x89", True: b"\x88"}[obj]
    elif isinstance(obj, int):
        out += b"J" + struct.pack("<i", obj)
    elif isinstance(obj, np.ndarray):  # what numpy 1's ndarray.__reduce__ gave, as in the archive
        out += b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n"
        _emit(out, (0,))
        _emit(out, b"b")
        out += b"tR("
        _emit(out, 1)
        _emit(out, obj.shape)
        out += b"cnumpy\ndtype\n"
        _emit(out, (obj.dtype.str[1:].encode(), 0, 1))
        out += b"R"
        _emit(out, (3, b"|", None, None, None, -1, -1, 0))
        out += b"b"
        _emit(out, False)
        _emit(out, obj.tobytes())
        out += b"tb"
    else:
        raise TypeError(type(obj))


def _batches(rows: tuple[int, ...] = (20, 20, 20, 20, 20, 30), seed: int = 0) -> dict[str, Any]:
    """The batches of a small archive (five training batches, then the test batch), as dicts."""
    rng = np.random.default_rng(seed)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    return {name: {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                   b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
            for name, n in zip(names, rows)}


def _meta() -> dict[bytes, Any]:
    return {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": 20,
            b"num_vis": 3072}


def _write_archive(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        folder = tarfile.TarInfo(ARCHIVE_DIR)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{ARCHIVE_DIR}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _archive(tmp_path: Path, batches: dict[str, Any], **replace: bytes) -> Path:
    members = {name: _py2_pickle(batch) for name, batch in batches.items()}
    members["batches.meta"] = _py2_pickle(_meta())
    members.update(replace)
    return _write_archive(tmp_path / "cifar-10-python.tar.gz", members)


def _read_all(path: Path) -> dict[str, Any]:
    dataset = pydata.MemoryMappedDataset(path)
    return dataset.read_batch(np.arange(len(dataset)))


def _expected(batches: dict[str, Any], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([batches[n][b"data"] for n in names])
    labels = np.concatenate([batches[n][b"labels"] for n in names])
    return data, labels


# -- round trip ----------------------------------------------------------------------------------


def test_archive_round_trips_into_train_and_test(tmp_path: Path) -> None:
    batches = _batches()
    indexes = convert_cifar10(_archive(tmp_path, batches), tmp_path / "out", progress=False)
    assert sorted(indexes) == ["test", "train"]
    assert indexes["train"].samples == 100 and indexes["test"].samples == 30
    train = [f"data_batch_{i}" for i in range(1, 6)]
    for split, names in (("train", train), ("test", ["test_batch"])):
        index = pydata.read_index(tmp_path / "out" / split)
        assert index.schema == {"image": pydata.Field("uint8", (3, 32, 32)),
                                "label": pydata.Field("int64", ())}
        assert index.metadata["classes"] == CLASSES
        read = _read_all(tmp_path / "out" / split)
        data, labels = _expected(batches, names)
        images = read["image"].numpy()
        assert images.shape == (len(labels), 3, 32, 32)
        np.testing.assert_array_equal(images.reshape(len(labels), -1), data)
        np.testing.assert_array_equal(read["label"].numpy(), labels)
        # Row-major channels, then rows, then columns: byte c*1024 + y*32 + x is pixel (c, y, x).
        assert images[7, 1, 2, 3] == data[7, 1 * 1024 + 2 * 32 + 3]


def test_worker_processes_and_small_shards_keep_the_order(tmp_path: Path) -> None:
    batches = _batches((300, 300, 300, 300, 300, 100))
    indexes = convert_cifar10(_archive(tmp_path, batches), tmp_path / "out", workers=2,
                              shard_bytes=256 << 10, progress=False)
    assert len(indexes["train"].shards) > 2
    data, labels = _expected(batches, [f"data_batch_{i}" for i in range(1, 6)])
    read = _read_all(tmp_path / "out" / "train")
    np.testing.assert_array_equal(read["image"].numpy().reshape(len(labels), -1), data)
    np.testing.assert_array_equal(read["label"].numpy(), labels)


@pytest.mark.parametrize("protocol", [4, 5])
def test_python3_repickled_archives_are_accepted(tmp_path: Path, protocol: int) -> None:
    batches = _batches()
    members = {name: pickle.dumps({k.decode(): v for k, v in batch.items()}, protocol=protocol)
               for name, batch in batches.items()}
    members["batches.meta"] = pickle.dumps({"label_names": CLASSES}, protocol=protocol)
    archive = _write_archive(tmp_path / "cifar.tar", members, mode="w")
    convert_cifar10(archive, tmp_path / "out", progress=False)
    read = _read_all(tmp_path / "out" / "test")
    images = read["image"].numpy().reshape(30, -1)
    np.testing.assert_array_equal(images, batches["test_batch"][b"data"])
    assert pydata.read_index(tmp_path / "out" / "test").metadata["classes"] == CLASSES


def test_an_existing_output_needs_overwrite(tmp_path: Path) -> None:
    archive = _archive(tmp_path, _batches())
    convert_cifar10(archive, tmp_path / "out", progress=False)
    with pytest.raises(FileExistsError, match=r"out[/\\]train' already holds a dataset"):
        convert_cifar10(archive, tmp_path / "out", progress=False)
    second = _batches(seed=1)
    convert_cifar10(_archive(tmp_path, second), tmp_path / "out", overwrite=True, progress=False)
    np.testing.assert_array_equal(_read_all(tmp_path / "out" / "test")["label"].numpy(),
                                  second["test_batch"][b"labels"])


# -- refused and damaged archives ----------------------------------------------------------------


def test_a_pickle_naming_another_global_is_refused_before_it_runs(tmp_path: Path) -> None:
    hostile = b"\x80\x02cbuiltins\nprint\n(S'unpickled'\ntR."
    archive = _archive(tmp_path, _batches(), data_batch_3=hostile)
    with pytest.raises(pydata.FormatError,
                       match=r"'cifar-10-batches-py/data_batch_3'.*'builtins\.print'.*refusing"):
        convert_cifar10(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _bad_shape(batch: dict[bytes, Any]) -> None:
    batch[b"data"] = batch[b"data"][:, :3000]


def _wrong_dtype(batch: dict[bytes, Any]) -> None:
    batch[b"data"] = batch[b"data"].astype(np.int16)


def _few_labels(batch: dict[bytes, Any]) -> None:
    batch[b"labels"] = batch[b"labels"][:-1]


def _label_out_of_range(batch: dict[bytes, Any]) -> None:
    batch[b"labels"][4] = 10


def _no_labels(batch: dict[bytes, Any]) -> None:
    del batch[b"labels"]


@pytest.mark.parametrize(("damage", "message"), [
    (_bad_shape, r"'data' must be a uint8 array of shape \(n, 3072\), got uint8 \(20, 3000\)"),
    (_wrong_dtype, r"'data' must be a uint8 array .* got int16 \(20, 3072\)"),
    (_few_labels, r"'labels' must be a list of 20 integers"),
    (_label_out_of_range, r"row 4 has label 10, expected 0\.\.9"),
    (_no_labels, r"expected keys 'data' and 'labels', found \['batch_label', 'data', 'file"),
])
def test_a_malformed_batch_is_named(tmp_path: Path, damage: Any, message: str) -> None:
    batches = _batches()
    damage(batches["data_batch_2"])
    with pytest.raises(pydata.FormatError, match=r"cifar-10-python\.tar\.gz' member "
                       r"'cifar-10-batches-py/data_batch_2': " + message):
        convert_cifar10(_archive(tmp_path, batches), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_missing_member_is_named(tmp_path: Path) -> None:
    batches = _batches()
    del batches["test_batch"]
    with pytest.raises(pydata.FormatError, match=r"cifar-10-python\.tar\.gz' is incomplete: "
                       r"no member 'cifar-10-batches-py/test_batch'"):
        convert_cifar10(_archive(tmp_path, batches), tmp_path / "out", progress=False)


def test_bad_label_names_are_named(tmp_path: Path) -> None:
    archive = _archive(tmp_path, _batches(), **{"batches.meta": _py2_pickle({b"label_names": []})})
    with pytest.raises(pydata.FormatError, match=r"member 'cifar-10-batches-py/batches\.meta': "
                       r"expected 'label_names', a non-empty list of strings, got \[\]"):
        convert_cifar10(archive, tmp_path / "out", progress=False)


def test_archives_that_are_not_cifar10_are_named(tmp_path: Path) -> None:
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("photos/cat.jpg"), io.BytesIO(b""))
    with pytest.raises(pydata.FormatError, match=r"other\.tar\.gz' is not the CIFAR-10 python "
                       r"archive: no member 'cifar-10-batches-py/data_batch_1'"):
        convert_cifar10(other, tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"this is not a tar file at all" * 40)
    with pytest.raises(pydata.FormatError, match=r"junk\.tar\.gz' is not a readable CIFAR-10"):
        convert_cifar10(tmp_path / "junk.tar.gz", tmp_path / "out")
    whole = _archive(tmp_path, _batches()).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(pydata.FormatError, match=r"cut\.tar\.gz' is not a readable CIFAR-10"):
        convert_cifar10(tmp_path / "cut.tar.gz", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"archive '.*missing\.tar\.gz' does not exist"):
        convert_cifar10(tmp_path / "missing.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()
