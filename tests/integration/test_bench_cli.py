"""``pydata bench`` end to end on a tiny dataset: the table, the JSON (every case read every
sample) and the PNG; bad arguments exit 1 with one line."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

import pydata
from pydata.bench import bench_dataset
from pydata.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

SAMPLES = 300
ROW = 3 * 8 * 8 + 8  # image + label bytes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "ds"
    rng = np.random.default_rng(0)
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=16 << 10, progress=False) as writer:
        writer.write_batch({"image": rng.integers(0, 256, (SAMPLES, 3, 8, 8), dtype=np.uint8),
                            "label": np.arange(SAMPLES)})
    return path


def test_bench_writes_json_and_png(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot, result = tmp_path / "bench.png", tmp_path / "bench.json"
    argv = ["bench", str(dataset), "--threads", "1", "2", "--workers", "0", "1", "--epochs", "2",
            "--batch-size", "64", "--plot", str(plot), "--json", str(result)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "median of 2 epoch(s)" in out and "<- fastest" in out
    assert f"wrote {plot}" in out and f"wrote {result}" in out

    data = json.loads(result.read_text())
    assert (data["samples"], data["batch_size"], data["epochs"]) == (SAMPLES, 64, 2)
    cases = [(p["loader"], p["parallelism"]) for p in data["points"]]
    assert cases == [("Loader", 1), ("Loader", 2), ("DataLoader", 0), ("DataLoader", 1)]
    for point in data["points"]:
        assert (point["samples"], point["nbytes"]) == (SAMPLES, SAMPLES * ROW)  # every sample, every byte
        assert len(point["epoch_seconds"]) == 2 and min(point["epoch_seconds"]) > 0
        assert point["samples_per_s"] == pytest.approx(SAMPLES / statistics.median(point["epoch_seconds"]))

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = pytest.importorskip("PIL.Image")
    with image.open(plot) as png:
        assert png.size == (720, 480)


def test_default_cases_cover_threads_and_workers(dataset: Path) -> None:
    result = bench_dataset(dataset, workers=[0], epochs=1, batch_size=128)
    threads = [p.parallelism for p in result.points if p.loader == "Loader"]
    assert threads == list(range(1, result.cores + 1))
    assert [p.parallelism for p in result.points if p.loader == "DataLoader"] == [0]
    assert "DataLoader  0" in result.format()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--threads", "0"], "expected a positive integer, got '0'"),
    (["--workers", "-1"], "expected a non-negative integer, got '-1'"),
    (["--threads", "--workers", "0"], "expected at least one argument"),
])
def test_bad_arguments(dataset: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(["bench", str(dataset), *argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pydata: error: bench:") and needle in lines[0]


def test_no_case_is_an_error(dataset: Path) -> None:
    with pytest.raises(ValueError, match="need at least one case"):
        bench_dataset(dataset, threads=[], workers=[])


def test_bench_peers_hands_over_to_the_peers_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--peers", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pydata bench --peers")
    assert "--workloads" in out and "--settings" in out
