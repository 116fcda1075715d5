"""The ``pydata`` command line end to end: convert (three sources), inspect, verify; --help
everywhere; and the error contract: status 1 with one ``pydata: error: ...`` line, no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pydata
from pydata.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def arrays(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    data: dict[str, Any] = {"latent": rng.standard_normal((200, 4, 8, 8)).astype(np.float16),
            "label": np.arange(200, dtype=np.int64)}
    for name, array in data.items():
        np.save(tmp_path / f"{name}.npy", array)
    return data


@pytest.fixture
def dataset(tmp_path: Path, arrays: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "ds"
    argv = ["convert", "npy-arrays", str(out), f"latent={tmp_path / 'latent.npy'}",
            f"label={tmp_path / 'label.npy'}", "--codec", "latent=shuffle+lz4", "--shard-bytes", "16K"]
    assert main(argv) == 0
    assert "wrote 200 samples" in capsys.readouterr().out
    return out


@pytest.mark.parametrize("argv", [
    ["--help"], ["convert", "--help"], ["convert", "npy-files", "--help"],
    ["convert", "npy-arrays", "--help"], ["convert", "images", "--help"],
    ["inspect", "--help"], ["verify", "--help"], ["demo", "--help"], ["train", "--help"], ["tour", "--help"],
])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pydata")
    assert " ".join(a for a in argv if a != "--help") in out.splitlines()[0]


def test_demo_trains_on_generated_images_and_compares_loader_with_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    accuracy = re.search(r"validation accuracy ([\d.]+)% after 3 epoch\(s\) \(chance: 10\.0%", text)
    assert accuracy is not None, text
    assert float(accuracy.group(1)) > 20.0  # class patterns are learnable: clearly above chance
    loader = re.search(r"loader alone +([\d,]+) samples/s", text)
    model = re.search(r"model \(training\) +([\d,]+) samples/s", text)
    assert loader and model and int(model.group(1).replace(",", "")) > 0
    assert re.search(r"\(([\d.]+)% of the time waiting for data\)", text)
    assert "is the bottleneck" in text
    for name in ("metrics.jsonl", "curves.png"):
        assert (out / "run" / name).is_file() and f"{out / 'run' / name}\n" in text
    assert (out / "run" / "config.yaml").is_file()
    index = pydata.read_index(out / "data")
    assert index.samples == 640 and index.schema["image"].shape == (3, 16, 16)


def test_tour_measures_the_core(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tour", "--samples", "512", "--batch-size", "64"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("pydata tour of the core: 512 smooth float16 latents")
    for needle in ("pydata gather", "memcpy (ceiling)", "int8+lz4", "RingBuffer try_push+try_pop"):
        assert needle in text
    assert main(["tour", "--samples", "8", "--batch-size", "64"]) == 1
    assert "--samples must be at least --batch-size" in capsys.readouterr().err


def test_convert_arrays_inspect_verify(dataset: Path, arrays: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    read = pydata.MemoryMappedDataset(dataset).read_batch(np.arange(200))
    np.testing.assert_array_equal(read["latent"].numpy(), arrays["latent"])

    assert main(["inspect", str(dataset)]) == 0
    table = capsys.readouterr().out
    for text in ("200 in", "latent", "shuffle+lz4", "indexed", "(4, 8, 8)", "label", "fixed", "x\n"):
        assert text in table

    assert main(["inspect", str(dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    index = pydata.read_index(dataset)
    assert (report["samples"], report["shards"], report["bytes"]) == (200, len(index.shards), index.nbytes)
    latent = report["fields"]["latent"]
    assert latent["raw_bytes"] == arrays["latent"].nbytes
    assert latent["ratio"] == pytest.approx(latent["raw_bytes"] / latent["bytes"])
    assert report["fields"]["label"] == {"kind": "tensor", "dtype": "int64", "shape": [], "codec": "raw",
                                         "layout": "fixed", "bytes": 1600, "raw_bytes": None, "ratio": None}
    assert report["bytes"] == report["overhead_bytes"] + latent["bytes"] + 1600

    assert main(["verify", str(dataset)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {len(index.shards)} shard(s), 200 samples")


def test_convert_sample_files_with_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        np.save(src / f"{i:02d}.npy", np.full(i + 1, i, np.int16))
    assert main(["convert", "npy-files", str(src), str(tmp_path / "ds"), "--field", "seq",
                 "--codec", "seq=lz4", "--workers", "2"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "ds"), "--json"]) == 0
    field = json.loads(capsys.readouterr().out)["fields"]["seq"]
    assert (field["shape"], field["codec"], field["raw_bytes"]) == (None, "lz4", 2 * sum(range(1, 11)))
    read = pydata.MemoryMappedDataset(tmp_path / "ds")[9]["seq"]
    assert read.tolist() == [9] * 10


def test_convert_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = pytest.importorskip("PIL.Image")
    for name in ("cat", "dog"):
        (tmp_path / "img" / name).mkdir(parents=True)
        image.new("RGB", (10, 6), (1, 2, 3)).save(tmp_path / "img" / name / "0.png")
    assert main(["convert", "images", str(tmp_path / "img"), str(tmp_path / "ds"), "--size", "4"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "(3, 4, 4)" in out
    assert '"classes": ["cat", "dog"]' in out


def test_an_existing_dataset_needs_overwrite(dataset: Path, tmp_path: Path,
                                             cli_fails: Callable[..., str]) -> None:
    argv = ["convert", "npy-arrays", str(dataset), f"label={tmp_path / 'label.npy'}"]
    cli_fails(argv, "already holds a dataset", "--overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert list(pydata.read_index(dataset).schema) == ["label"]


def test_a_missing_path_is_one_line(tmp_path: Path, cli_fails: Callable[..., str]) -> None:
    missing = str(tmp_path / "nothing")
    cli_fails(["inspect", missing], missing)
    cli_fails(["verify", missing], missing)
    cli_fails(["convert", "npy-files", missing, str(tmp_path / "ds")], missing)
    cli_fails(["convert", "npy-arrays", str(tmp_path / "ds"), f"x={missing}.npy"], "nothing.npy", "field 'x'")
    cli_fails(["convert", "images", missing, str(tmp_path / "ds")], missing)


def test_verify_names_the_damaged_shard(dataset: Path, cli_fails: Callable[..., str]) -> None:
    shard = dataset / pydata.read_index(dataset).shards[1].file
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # a payload byte: only the whole-file checksum can see it
    shard.write_bytes(bytes(data))
    cli_fails(["verify", str(dataset)], "1 of", shard.name, "checksum mismatch")
    shard.unlink()
    cli_fails(["verify", str(dataset)], shard.name, "missing")


@pytest.mark.parametrize(("argv", "needle"), [
    (["convert", "images", "only-one-path"], "the following arguments are required: OUT"),
    (["convert", "npy-arrays", "out", "no-equals-sign"], "expected NAME=VALUE"),
    (["convert", "npy-files", "src", "out", "--workers", "0"], "expected a positive integer"),
    (["convert", "npy-files", "src", "out", "--shard-bytes", "lots"], "expected a positive size"),
    (["convert", "npy-files", "src", "out", "--codec", "data"], "expected NAME=VALUE"),
    (["convert", "tarballs"], "invalid choice: 'tarballs'"),
    (["convert"], "convert needs a SOURCE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["inspect"], "the following arguments are required: PATH"),
])
def test_wrong_arguments(argv: list[str], needle: str, cli_fails: Callable[..., str]) -> None:
    cli_fails(argv, needle)


def test_a_bad_codec_is_one_line(tmp_path: Path, arrays: dict[str, Any],
                                 cli_fails: Callable[..., str]) -> None:
    argv = ["convert", "npy-arrays", str(tmp_path / "ds"), f"label={tmp_path / 'label.npy'}"]
    cli_fails([*argv, "--codec", "label=zip"], "unknown codec 'zip'")
    cli_fails([*argv, "--codec", "label=int8"], "field 'label'", "quantises floats")
    cli_fails([*argv, "--codec", "image=lz4"], "unknown field(s) ['image']")


def _script() -> list[str]:
    return [sys.executable, "-c", "import sys; from pydata.cli import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    root = str(Path(pydata.__file__).parent.parent)  # not resolved: a staged package links its files
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def test_exit_codes_of_a_real_process(dataset: Path, tmp_path: Path) -> None:
    run = subprocess.run([*_script(), "verify", str(dataset)], capture_output=True, text=True,
                         env=_env(), cwd=tmp_path, check=False)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("OK:")
    run = subprocess.run([*_script(), "inspect", str(tmp_path / "nothing")], capture_output=True,
                         text=True, env=_env(), cwd=tmp_path, check=False)
    assert run.returncode == 1
    assert run.stderr.startswith("pydata: error: no dataset at")
    assert len(run.stderr.splitlines()) == 1
    assert "Traceback" not in run.stderr
    run = subprocess.run([*_script(), "convert", "images"], capture_output=True, text=True,
                         env=_env(), cwd=tmp_path, check=False)
    assert run.returncode == 1
    assert len(run.stderr.splitlines()) == 1


INSTALLED_SCRIPT = Path(sys.executable).parent / "pydata"


@pytest.mark.skipif(not INSTALLED_SCRIPT.is_file(), reason="no installed package (a development stage)")
def test_the_installed_script(tmp_path: Path) -> None:
    script = str(INSTALLED_SCRIPT)
    run = subprocess.run([script, "verify", "--help"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert run.returncode == 0
    assert run.stdout.startswith("usage: pydata verify")
    run = subprocess.run([script, "verify", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert run.returncode == 1
    assert run.stderr.startswith("pydata: error: ")
