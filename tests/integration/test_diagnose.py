"""``pydata diagnose`` on a small dataset with real DataLoader workers: the numbers are present,
positive and measured — page-cache residency follows posix_fadvise(DONTNEED) and a read, the
workers are live child processes read from the parent, and the dataset pages they map show up in
their RSS but not in their own (private) memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import pydata
from pydata.cli import main
from pydata.diagnose import diagnose

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux smaps_rollup"),
    # A one-core CI machine makes torch warn that 2 workers exceed its suggestion.
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    # Python >= 3.12 warns when a multi-threaded process forks; the workers are forked on purpose.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

IMAGE = (3, 64, 64)  # 12 KiB rows
SAMPLES = 5120  # 60 MiB
ROW = int(np.prod(IMAGE))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("diagnose") / "ds"
    schema = {"image": pydata.Field("uint8", IMAGE), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=16 << 20, progress=False) as writer:
        for start in range(0, SAMPLES, 1024):
            ids = np.arange(start, start + 1024)
            rows = np.arange(ROW, dtype=np.uint8)[None, :] + (ids % 251).astype(np.uint8)[:, None]
            writer.write_batch({"image": rows.reshape(len(ids), *IMAGE), "label": ids})
    return path


def _shards(path: Path) -> list[Path]:
    return [path / s.file for s in pydata.read_index(path).shards]


def _drop_from_page_cache(path: Path) -> None:
    """posix_fadvise(DONTNEED) on every shard; skips the test where the file system keeps files
    in memory anyway (tmpfs), checked independently of diagnose through MappedFile."""
    for shard in _shards(path):
        fd = os.open(shard, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if sum(pydata.MappedFile(s).resident_bytes() for s in _shards(path)) > 0.05 * SAMPLES * ROW:
        pytest.skip("the file system keeps these files in memory (tmpfs?): they cannot be dropped")


def test_worker_memory_and_residency_are_measured(dataset: Path) -> None:
    _drop_from_page_cache(dataset)
    result = diagnose(dataset, workers=2, batch_size=64)
    disk = result.disk_bytes
    assert disk == pydata.read_index(dataset).nbytes > 60 << 20
    assert result.resident_before < 0.05 * disk  # dropped just before
    assert result.resident_after > 0.95 * disk  # the epoch read every page
    assert (result.samples, result.epoch_samples, result.workers) == (SAMPLES, SAMPLES, 2)
    assert result.epoch_seconds > 0 and result.batch_bytes == 64 * (ROW + 8)
    assert result.naive_copy_bytes == 2 * disk

    workers = result.worker_memory
    pids = {w.peak.pid for w in workers}
    assert len(workers) == 2 and len(pids) == 2 and os.getpid() not in pids
    assert all(w.first.pid == w.peak.pid for w in workers)
    share = disk / 2
    for w in workers:
        assert w.readings >= 2  # at the first batch and after the epoch, at least
        assert 0 < w.peak.private_dirty <= w.peak.uss <= w.peak.rss
        # The pages of its share that a worker mapped while reading are in its RSS...
        assert w.peak.rss - w.first.rss > 0.5 * share
        # ...but not in its own memory: a copy of the data, which is what the naive per-worker
        # copy would cost, would add at least a share. (Some growth is the worker's own
        # allocations while it iterates.)
        assert w.peak.private_dirty - w.first.private_dirty < 0.15 * share
        assert w.peak.uss - w.first.uss < 0.25 * share
    assert sum(w.peak.private_dirty - w.first.private_dirty for w in workers) < 0.1 * result.naive_copy_bytes

    topics = [r.topic for r in result.recommendations]
    assert topics[:3] == ["workers", "prefetch", "page cache"]
    assert "codec image" in topics and "codec label" not in topics  # 8-byte rows are not trialled
    workers_advice = result.recommendations[0]
    assert workers_advice.value == max(0, result.cores - 1)
    assert f"{max(w.peak.private_dirty for w in workers) / 2**20:.1f} MiB of its own memory" in workers_advice.reason


def test_residency_after_a_read(dataset: Path) -> None:
    _drop_from_page_cache(dataset)
    for shard in _shards(dataset):
        shard.read_bytes()
    result = diagnose(dataset, workers=0, max_batches=1)
    assert result.resident_before > 0.95 * result.disk_bytes
    assert result.worker_memory == [] and result.epoch_samples == 256
    assert "not measured with 0 workers" in result.recommendations[0].reason


def test_cli_json_and_text(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", str(dataset), "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["workers"] == 1 and len(report["worker_memory"]) == 1
    peak = report["worker_memory"][0]["peak"]
    assert peak["uss"] == peak["private_clean"] + peak["private_dirty"] and peak["rss"] > peak["uss"]
    assert {r["topic"] for r in report["recommendations"]} >= {"workers", "prefetch", "page cache"}

    assert main(["diagnose", str(dataset), "--workers", "1", "--batch-size", "512"]) == 0
    text = capsys.readouterr().out
    for needle in ("page cache", "worker 0", "private dirty", "per-worker copies of the data would take",
                   "recommendations"):
        assert needle in text
    assert main(["diagnose", str(dataset.parent / "missing")]) == 1
    assert "pydata: error:" in capsys.readouterr().err
