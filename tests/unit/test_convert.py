"""pydata.convert: per-sample files, whole arrays and image folders, round-tripped through
MemoryMappedDataset; schema inference; errors that name the file; partitioned writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.convert import arrays as arrays_module
from pydata.convert import convert_arrays, convert_image_folder, convert_sample_files


def _read_all(path: Path) -> dict[str, Any]:
    dataset = pydata.MemoryMappedDataset(path)
    return dataset.read_batch(np.arange(len(dataset)))


# -- per-sample files --------------------------------------------------------------------------


def test_npy_files_of_one_shape_give_a_fixed_field(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = np.random.default_rng(0).standard_normal((12, 3, 5)).astype(np.float32)
    for i, row in enumerate(data):
        np.save(src / f"{i:03d}.npy", row)
    (src / "notes.txt").write_text("ignored")
    index = convert_sample_files(src, tmp_path / "ds", field="x", progress=False)
    assert index.schema == {"x": pydata.Field("float32", (3, 5))}
    assert index.metadata["source"] == "sample-files"
    np.testing.assert_array_equal(_read_all(tmp_path / "ds")["x"].numpy(), data)


def test_npy_files_of_varying_shape_give_a_variable_field_with_codec(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rows = [np.arange(i + 1, dtype=np.int32) for i in range(9)]
    for i, row in enumerate(rows):
        np.save(src / f"{i}.npy", row)
    index = convert_sample_files(src, tmp_path / "ds", codecs={"data": "lz4"}, shard_bytes=64,
                                 progress=False)
    assert index.schema == {"data": pydata.Field("int32", None, codec="lz4")}
    assert len(index.shards) > 1
    read = _read_all(tmp_path / "ds")["data"]
    for got, want in zip(read, rows):
        np.testing.assert_array_equal(got.numpy(), want)


def test_pt_files_hold_dicts_of_tensors_numbers_and_text(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    samples: list[dict[str, Any]] = [{"latent": torch.randn(4, 2, 2).to(torch.bfloat16), "label": i, "caption": f"text {i}",
                "mask": torch.ones(i + 1, dtype=torch.bool)} for i in range(5)]
    for i, sample in enumerate(samples):
        torch.save(sample, src / f"{i}.pt")
    index = convert_sample_files(src, tmp_path / "ds", progress=False)
    assert index.schema == {"latent": pydata.Field("bfloat16", (4, 2, 2)), "label": pydata.Field("int64", ()),
                            "caption": pydata.Field("str"), "mask": pydata.Field("bool")}
    read = _read_all(tmp_path / "ds")
    assert torch.equal(read["latent"], torch.stack([s["latent"] for s in samples]))
    assert read["label"].tolist() == list(range(5))
    assert read["caption"] == [s["caption"] for s in samples]
    assert [m.tolist() for m in read["mask"]] == [s["mask"].tolist() for s in samples]


def test_a_pt_file_with_one_tensor_uses_the_field_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        torch.save(torch.full((2,), float(i)), src / f"{i}.pt")
    convert_sample_files(src, tmp_path / "ds", field="value", progress=False)
    assert _read_all(tmp_path / "ds")["value"].tolist() == [[0, 0], [1, 1], [2, 2]]


def test_a_dtype_that_changes_names_the_file_and_field(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "0.npy", np.zeros(3, np.float32))
    np.save(src / "1.npy", np.zeros(3, np.float64))
    with pytest.raises(pydata.FormatError, match=r"1\.npy', field 'data': dtype float64, but .*0\.npy' has float32"):
        convert_sample_files(src, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()  # the schema pass fails before anything is written


def test_fields_that_differ_name_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"a": torch.zeros(1)}, src / "0.pt")
    torch.save({"a": torch.zeros(1), "b": torch.zeros(1)}, src / "1.pt")
    with pytest.raises(pydata.FormatError, match=r"1\.pt': fields \['a', 'b'\] differ"):
        convert_sample_files(src, tmp_path / "ds", progress=False)


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "0.npy", np.zeros(3, np.float32))
    (src / "1.npy").write_bytes(b"not an npy file")
    with pytest.raises(pydata.FormatError, match=r"sample file '.*1\.npy': cannot be read"):
        convert_sample_files(src, tmp_path / "ds", progress=False)


def test_missing_or_empty_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert_sample_files(tmp_path / "nowhere", tmp_path / "ds", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no sample files .* in '.*empty'"):
        convert_sample_files(tmp_path / "empty", tmp_path / "ds", progress=False)


def test_codecs_are_checked_against_the_fields(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "0.npy", np.zeros(3, np.int16))
    with pytest.raises(pydata.FormatError, match=r"unknown field\(s\) \['image'\]"):
        convert_sample_files(src, tmp_path / "ds", codecs={"image": "lz4"}, progress=False)
    with pytest.raises(pydata.FormatError, match="field 'data': codec 'int8' quantises floats"):
        convert_sample_files(src, tmp_path / "ds", codecs={"data": "int8"}, progress=False)


# -- whole arrays ------------------------------------------------------------------------------


def _save_arrays(tmp_path: Path, n: int = 300) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    data: dict[str, Any] = {"x": rng.standard_normal((n, 2, 8)).astype(np.float16), "y": np.arange(n, dtype=np.int64)}
    for name, array in data.items():
        np.save(tmp_path / f"{name}.npy", array)
    return data


def test_arrays_round_trip_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _save_arrays(tmp_path)
    monkeypatch.setattr(arrays_module, "CHUNK_BYTES", 1000)  # many write_batch calls
    index = convert_arrays(tmp_path / "ds", {"x": tmp_path / "x.npy", "y": tmp_path / "y.npy"},
                           codecs={"x": "shuffle+lz4"}, shard_bytes=2000, progress=False)
    assert index.schema == {"x": pydata.Field("float16", (2, 8), codec="shuffle+lz4"),
                            "y": pydata.Field("int64", ())}
    assert len(index.shards) > 2
    read = _read_all(tmp_path / "ds")
    np.testing.assert_array_equal(read["x"].numpy(), data["x"])
    np.testing.assert_array_equal(read["y"].numpy(), data["y"])


def test_arrays_with_worker_processes_keep_the_sample_order(tmp_path: Path) -> None:
    data = _save_arrays(tmp_path, n=5000)
    index = convert_arrays(tmp_path / "ds", {"x": tmp_path / "x.npy", "y": tmp_path / "y.npy"},
                           workers=2, shard_bytes=16 << 10, progress=False)
    assert {s.file.split("-")[1] for s in index.shards} == {"00000", "00001"}  # two partitions
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if not p.name.endswith(".pds")) == ["index.json"]
    np.testing.assert_array_equal(_read_all(tmp_path / "ds")["y"].numpy(), data["y"])


def test_array_errors_name_the_file_and_field(tmp_path: Path) -> None:
    _save_arrays(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'.*missing\.npy' \(field 'z'\) does not exist"):
        convert_arrays(tmp_path / "ds", {"y": tmp_path / "y.npy", "z": tmp_path / "missing.npy"})
    np.save(tmp_path / "short.npy", np.zeros(7))
    with pytest.raises(pydata.FormatError, match=r"first \(sample\) dimension: \{'y': 300, 'z': 7\}"):
        convert_arrays(tmp_path / "ds", {"y": tmp_path / "y.npy", "z": tmp_path / "short.npy"})
    np.save(tmp_path / "scalar.npy", np.float32(1))
    with pytest.raises(pydata.FormatError, match=r"scalar\.npy' \(field 'z'\): a 0-d array"):
        convert_arrays(tmp_path / "ds", {"z": tmp_path / "scalar.npy"})
    np.savez(tmp_path / "both.npz", a=np.zeros(3))
    with pytest.raises(pydata.FormatError, match=r"both\.npz' \(field 'z'\): holds a NpzFile"):
        convert_arrays(tmp_path / "ds", {"z": tmp_path / "both.npz"})
    assert not (tmp_path / "ds").exists()


# -- image folders -----------------------------------------------------------------------------

COLOURS = {"blue": (0, 0, 255), "green": (0, 200, 0), "red": (255, 0, 0)}


def _image_folder(tmp_path: Path) -> Path:
    image = pytest.importorskip("PIL.Image")
    root = tmp_path / "images"
    for name, colour in COLOURS.items():
        (root / name / "sub").mkdir(parents=True)
        image.new("RGB", (20, 12), colour).save(root / name / "a.png")
        image.new("RGB", (7, 9), colour).save(root / name / "sub" / "b.PNG")
    image.new("L", (10, 10), 77).save(root / "red" / "gray.png")  # converted to RGB
    (root / "red" / "readme.txt").write_text("not an image")
    return root


def test_image_folder_resizes_to_rgb_chw_with_sorted_class_labels(tmp_path: Path) -> None:
    index = convert_image_folder(_image_folder(tmp_path), tmp_path / "ds", size=8, progress=False)
    assert index.schema == {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    assert index.metadata["classes"] == ["blue", "green", "red"]
    read = _read_all(tmp_path / "ds")
    assert read["label"].tolist() == [0, 0, 1, 1, 2, 2, 2]
    images = read["image"].numpy()
    for image, label in zip(images[[0, 1, 2, 3, 4, 6]], [0, 0, 1, 1, 2, 2]):
        colour = COLOURS[index.metadata["classes"][label]]
        np.testing.assert_array_equal(image, np.broadcast_to(np.array(colour, np.uint8)[:, None, None], (3, 8, 8)))
    assert (images[5] == 77).all()  # red/gray.png sorts between a.png and sub/b.PNG


def test_image_folder_can_keep_the_encoded_files(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    index = convert_image_folder(root, tmp_path / "ds", keep_encoded=True, progress=False)
    assert index.schema == {"jpeg": pydata.Field("bytes"), "label": pydata.Field("int64", ())}
    read = _read_all(tmp_path / "ds")
    assert read["jpeg"][0] == (root / "blue" / "a.png").read_bytes()


def test_an_unreadable_image_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "green" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(pydata.FormatError, match=r"image '.*broken\.png': cannot be decoded"):
        convert_image_folder(root, tmp_path / "ds", size=4, progress=False)
    assert list((tmp_path / "ds").iterdir()) == []


def test_a_failing_partition_removes_every_partition(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "red" / "zz-broken.png").write_bytes(b"garbage")  # last sample: in the last partition
    with pytest.raises(pydata.FormatError, match=r"zz-broken\.png"):
        convert_image_folder(root, tmp_path / "ds", size=4, workers=2, shard_bytes=64, progress=False)
    assert list((tmp_path / "ds").iterdir()) == []


def test_image_folders_without_classes_are_rejected(tmp_path: Path) -> None:
    pytest.importorskip("PIL.Image")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        convert_image_folder(tmp_path / "flat", tmp_path / "ds")
    (tmp_path / "flat" / "cls").mkdir()
    with pytest.raises(FileNotFoundError, match="hold no images"):
        convert_image_folder(tmp_path / "flat", tmp_path / "ds")


# -- the destination ---------------------------------------------------------------------------


def test_an_existing_dataset_needs_overwrite_and_is_replaced_cleanly(tmp_path: Path) -> None:
    _save_arrays(tmp_path)
    arrays = {"y": tmp_path / "y.npy"}
    first = convert_arrays(tmp_path / "ds", arrays, shard_bytes=512, progress=False)
    assert len(first.shards) > 1
    with pytest.raises(FileExistsError, match="already holds a dataset.*overwrite"):
        convert_arrays(tmp_path / "ds", arrays, progress=False)
    second = convert_arrays(tmp_path / "ds", arrays, workers=2, overwrite=True, progress=False)
    left = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert left == sorted([*(s.file for s in second.shards), "index.json"])  # old shards removed
    assert _read_all(tmp_path / "ds")["y"].tolist() == list(range(300))
