"""The peers benchmark harness (pydata.peers), at a tiny size: pydata and a baseline run in their
own subprocesses and are checked, a missing peer is reported with the reason, and a deliberately
broken loader (one drops a sample, one corrupts a byte) is reported as incorrect, not timed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pydata.peers import main
from pydata.peers.workloads import Source, batch_fingerprints, compare, open_source

pytestmark = pytest.mark.integration

BROKEN = '''
from pydata.peers.systems.base import Reader
from pydata.peers.systems.baselines import MemmapBatched


class _Damaging(Reader):
    """With 1 thread the first batch loses a sample; with 2 one byte of an image flips."""

    def __init__(self, inner, threads):
        self.inner, self.threads = inner, threads

    def batches(self):
        for i, batch in enumerate(self.inner.batches()):
            if i == 0 and self.threads == 1:
                batch = {k: v[1:] for k, v in batch.items()}
            elif i == 0:
                batch = {k: v.copy() for k, v in batch.items()}
                batch["image"][0, 0, 0, 0] ^= 1
            yield batch

    def close(self):
        self.inner.close()


class Broken(MemmapBatched):
    name = "broken loader"

    def open(self, ctx):
        return _Damaging(super().open(ctx), ctx.variant)
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str, Path]:
    root = tmp_path_factory.mktemp("peers")
    plugin = root / "broken.py"
    plugin.write_text(BROKEN)
    out = root / "out"
    code = main(["--samples", "300", "--epochs", "1", "--workloads", "images", "--settings", "hot",
                 "--systems", "memmap-batched", "pydata-loader", "mosaic", f"{plugin}:Broken",
                 "--workdir", str(root / "work"), "--out", str(out), "--quiet"])
    return code, json.loads((out / "peers.json").read_text()), (out / "peers.md").read_text(), out


def test_json_has_the_environment_and_a_checked_row_per_variant(results: tuple[int, dict, str, Path]) -> None:
    code, data, _, _ = results
    assert code == 0
    env = data["environment"]
    assert env["cores"] >= 1 and env["memory_gib"] > 0 and env["versions"]["torch"]
    rows = {(r["key"], r["variant"]): r for r in data["rows"]}
    for key in (("memmap-batched", "1 threads"), ("memmap-batched", "2 threads"),
                ("pydata-loader", "1 threads"), ("pydata-loader", "2 threads")):
        row = rows[key]
        assert row["status"] == "ok", row
        assert row["check"]["verdict"] == "correct"
        assert row["samples_per_s"] > 0 and row["mb_per_s"] > 0 and row["first_batch_s"] >= 0
        assert row["cpu_s_per_1k"] > 0 and row["peak_rss_main_mb"] > 0 and row["peak_uss_main_mb"] > 0
        assert row["epochs"][0]["samples"] == 300 and row["epochs"][0]["touched_bytes"] > 0
        assert row["conversion_s"] >= 0 and row["disk_mb"] > 0
    assert rows["pydata-loader", "2 threads"]["x_memmap_batched"] > 0
    assert {c["ceiling"] for c in data["ceilings"]} == {"memcpy", "numpy gather"}


def test_broken_loader_is_reported_incorrect_and_not_timed(results: tuple[int, dict, str, Path]) -> None:
    _, data, table, _ = results
    broken = [r for r in data["rows"] if r["system"] == "broken loader"]
    assert [r["variant"] for r in broken] == ["1 threads", "2 threads"]
    dropped, corrupted = broken
    assert dropped["status"].startswith("incorrect: delivered 299 of 300 samples; 1 missing")
    assert corrupted["status"].startswith("incorrect: delivered 300 of 300 samples; 1 missing, 0 duplicated, 1 with")
    assert all("samples_per_s" not in r and r["x_memmap_batched"] is None for r in broken)
    assert table.count("| broken loader |") == 2 and "incorrect" in table


def test_missing_peer_is_reported_with_the_reason(results: tuple[int, dict, str, Path]) -> None:
    _, data, table, out = results
    mosaic = next(s for s in data["systems"] if s["key"] == "mosaic")
    assert mosaic["status"].startswith("unavailable: mosaicml-streaming cannot be imported")
    assert not [r for r in data["rows"] if r["key"] == "mosaic"]
    assert "| MosaicML Streaming |" in table and "unavailable" in table
    assert (out / "peers.png").stat().st_size > 0 or "no chart" in table


def test_fingerprints_tell_duplicates_from_corruption(tmp_path: Path) -> None:
    source: Source = open_source("tokens", 40, 0, tmp_path)
    expected = source.fingerprints()
    batch = source.batch(np.arange(40))
    assert compare(expected, batch_fingerprints(source.specs, batch)).ok
    batch["tokens"][5] = batch["tokens"][5].copy()
    batch["tokens"][5][-1] += 1
    batch["tokens"][6] = batch["tokens"][7]
    verdict = compare(expected, batch_fingerprints(source.specs, batch))
    assert (verdict.missing, verdict.duplicated, verdict.unknown) == (2, 1, 1)


def test_token_sequences_through_pydata_are_checked_correct(tmp_path: Path) -> None:
    """The token workload through pydata's readers (ragged batches) and a baseline (lists)."""
    out = tmp_path / "out"
    code = main(["--samples", "200", "--epochs", "1", "--workloads", "tokens", "--settings", "hot",
                 "--systems", "memmap-batched", "pydata-loader", "pydata-dataloader",
                 "--workdir", str(tmp_path / "work"), "--out", str(out), "--quiet"])
    assert code == 0
    rows = json.loads((out / "peers.json").read_text())["rows"]
    assert {r["key"] for r in rows} == {"memmap-batched", "pydata-loader", "pydata-dataloader"}
    for row in rows:
        assert row["status"] == "ok" and row["check"]["verdict"] == "correct", row
        assert row["epochs"][0]["samples"] == 200 and row["mb_per_s"] > 0
