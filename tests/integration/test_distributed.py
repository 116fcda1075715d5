"""torch.distributed (gloo) ranks with DataLoader workers, streaming from the local S3 server:
every sample exactly once across all readers; and a reader killed mid-epoch leaves a cache that
the next run uses without trouble."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata

pytestmark = [pytest.mark.integration, pytest.mark.distributed, pytest.mark.s3]

SAMPLES = 301

READER = textwrap.dedent('''
    import json, os, sys
    import torch, torch.distributed as dist
    import pydata

    url, options, cache, out, workers = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    dist.init_process_group("gloo")
    ds = pydata.StreamingDataset(url, local=cache, batch_size=8, storage_options=options, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    ids = []
    for batch in loader:
        ids.extend(batch["label"].tolist())
        if os.environ.get("PYDATA_TEST_STALL") and len(ids) >= 40:
            print("stalling", flush=True)
            import time
            time.sleep(3600)  # the test kills this process here
    with open(out, "w") as f:
        json.dump({"rank": dist.get_rank(), "ids": ids}, f)
    dist.barrier()
    dist.destroy_process_group()
''')


@pytest.fixture
def remote(tmp_path: Path, s3_bucket: str, upload_dataset: Callable[..., str]) -> str:
    path = tmp_path / "ds"
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    rng = np.random.default_rng(0)
    with pydata.ShardWriter(path, schema, shard_bytes=6_000, progress=False) as writer:
        writer.write_batch({"image": rng.integers(0, 256, (SAMPLES, 3, 8, 8), dtype=np.uint8),
                            "label": np.arange(SAMPLES)})
    return upload_dataset(path, s3_bucket)


def _launch(tmp_path: Path, remote: str, options: dict[str, Any], rank: int, world: int, port: int,
            workers: int, stall: bool = False) -> subprocess.Popen[str]:
    script = tmp_path / "reader.py"
    script.write_text(READER)
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": os.pathsep.join(sys.path)}
    if stall:
        env["PYDATA_TEST_STALL"] = "1"
    args = [sys.executable, str(script), remote, json.dumps(options), str(tmp_path / "cache"),
            str(tmp_path / f"rank{rank}.json"), str(workers)]
    # A session of its own, so that a kill can take the reader and its DataLoader workers at once.
    return subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_with_two_workers_each_read_every_sample_once(
        tmp_path: Path, remote: str, s3_options: dict[str, Any]) -> None:
    port = _free_port()
    procs = [_launch(tmp_path, remote, s3_options, rank, 2, port, workers=2) for rank in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    per_rank = [r["ids"] for r in sorted(results, key=lambda r: r["rank"])]
    assert len(per_rank[0]) == len(per_rank[1]) == SAMPLES // 2
    everything = per_rank[0] + per_rank[1]
    assert len(set(everything)) == len(everything) == 2 * (SAMPLES // 2)


def test_a_reader_killed_mid_epoch_leaves_a_usable_cache(
        tmp_path: Path, remote: str, s3_options: dict[str, Any]) -> None:
    stalled = _launch(tmp_path, remote, s3_options, 0, 1, _free_port(), workers=2, stall=True)
    assert stalled.stdout is not None
    line = stalled.stdout.readline()  # blocks until the reader is mid-epoch (or has died)
    assert line.strip() == "stalling", stalled.stderr.read() if stalled.stderr else ""
    os.killpg(stalled.pid, signal.SIGKILL)  # the reader and its workers, mid-epoch, no clean-up
    stalled.communicate(timeout=60)
    again = _launch(tmp_path, remote, s3_options, 0, 1, _free_port(), workers=2)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]
    ids = json.loads((tmp_path / "rank0.json").read_text())["ids"]
    assert sorted(ids) == list(range(SAMPLES))
