"""The ``pydata profile`` and ``pydata convert cifar10`` commands end to end: the printed
table, the JSON file, the converted splits read back, and errors as one ``pydata: error:`` line."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.cli import main
from pydata.models import ResNet

pytestmark = pytest.mark.integration

CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("argv", [["profile", "--help"], ["convert", "cifar10", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pydata {' '.join(argv[:-1])}")


# -- profile -------------------------------------------------------------------------------------


def test_profile_resnet_prints_a_table_and_writes_json(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "profile.json"
    assert main(["profile", "--model", "resnet", "--depth", "8", "--width", "4",
                 "--num-classes", "7", "--image-size", "8", "--batch-size", "2", "--warmup", "0",
                 "--repeats", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ResNet on [2, 3, 8, 8] (cpu, median of 2 runs)")
    assert [line.split()[0] for line in out[2:9]] == ["stem", "stage1", "stage2", "stage3", "pool",
                                                      "head", "(total)"]
    assert out[-1] == f"wrote {path}"
    profile = json.loads(path.read_text())
    expected = sum(p.numel() for p in ResNet(num_classes=7, depth=8, width=4).parameters())
    assert (profile["model"], profile["parameters"], profile["repeats"]) == ("ResNet", expected, 2)
    assert profile["input_shape"] == [2, 3, 8, 8]
    assert profile["modules"][-1]["name"] == "head"
    assert profile["modules"][-1]["forward_flops"] == 2 * 2 * 16 * 7  # N * features * classes


def test_profile_autoencoder_uses_its_options(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ae.json"
    assert main(["profile", "--model", "autoencoder", "--channels", "1", "--latent-channels", "2",
                 "--width", "4", "--image-size", "8", "--batch-size", "3", "--warmup", "0",
                 "--repeats", "1", "--json", str(path)]) == 0
    assert "AutoEncoder on [3, 1, 8, 8]" in capsys.readouterr().out
    profile = json.loads(path.read_text())
    assert [m["name"] for m in profile["modules"]] == ["encoder", "decoder"]
    # The encoder's last layer: a 1x1 convolution from 8 channels to 2 latents on 2x2 pixels.
    assert profile["modules"][0]["forward_flops"] > 2 * 3 * 2 * 4 * 8


@pytest.mark.parametrize(("argv", "needle"), [
    (["--depth", "9"], "ResNet depth must be 6 * n + 2 with n >= 1 (8, 14, 20, 56, ...), got 9"),
    (["--model", "autoencoder", "--image-size", "10"],
     "H and W divisible by 4, got shape (32, 3, 10, 10)"),
    (["--model", "vit"], "argument --model: invalid choice: 'vit'"),
    (["--batch-size", "0"], "expected a positive integer, got '0'"),
    (["--device", "tpu9"], "tpu9"),
])
def test_profile_errors_are_one_line(argv: list[str], needle: str,
                                     cli_fails: Callable[..., str]) -> None:
    cli_fails(["profile", "--repeats", "1", "--warmup", "0", *argv], needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_profile_on_a_missing_gpu_says_so(cli_fails: Callable[..., str]) -> None:
    cli_fails(["profile", "--device", "cuda"], "--device cuda: no CUDA device is available")


# -- convert cifar10 -----------------------------------------------------------------------------


def _cifar_archive(path: Path, rows: int = 10, skip: str = "") -> dict[str, Any]:
    """A small archive in the CIFAR-10 layout (pickled at protocol 4); returns its batches."""
    rng = np.random.default_rng(3)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    batches = {name: {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                      b"labels": rng.integers(0, 10, rows).tolist()} for name in names}
    members = {name: pickle.dumps(batch, protocol=4) for name, batch in batches.items()}
    meta = {b"label_names": [c.encode() for c in CLASSES]}
    members["batches.meta"] = pickle.dumps(meta, protocol=4)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            if name != skip:
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return batches


def test_convert_cifar10_writes_train_and_test(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               cli_fails: Callable[..., str]) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    batches = _cifar_archive(archive)
    out = tmp_path / "cifar"
    assert main(["convert", "cifar10", str(archive), str(out), "--shard-bytes", "64K"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote 50 train samples in ")
    assert lines[0].endswith(f"to {out / 'train'}")
    assert lines[1].startswith("wrote 10 test samples in 1 shard(s)")
    train = pydata.MemoryMappedDataset(out / "train").read_batch(np.arange(50))
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    np.testing.assert_array_equal(train["image"].numpy(), data.reshape(50, 3, 32, 32))
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert train["label"].tolist() == labels
    assert pydata.read_index(out / "test").metadata["classes"] == CLASSES
    assert main(["verify", str(out / "train")]) == 0

    argv = ["convert", "cifar10", str(archive), str(out)]
    cli_fails(argv, "already holds a dataset", "--overwrite")
    assert main([*argv, "--overwrite", "--workers", "2"]) == 0


def test_convert_cifar10_errors_name_the_archive(tmp_path: Path,
                                                 cli_fails: Callable[..., str]) -> None:
    archive = tmp_path / "partial.tar.gz"
    _cifar_archive(archive, skip="data_batch_4")
    cli_fails(["convert", "cifar10", str(archive), str(tmp_path / "out")],
           "partial.tar.gz' is incomplete: no member 'cifar-10-batches-py/data_batch_4'")
    missing = str(tmp_path / "nowhere.tar.gz")
    cli_fails(["convert", "cifar10", missing, str(tmp_path / "out")], missing,
           "does not exist")
    cli_fails(["convert", "cifar10", str(archive)],
           "the following arguments are required: OUT")
    assert not (tmp_path / "out").exists()
