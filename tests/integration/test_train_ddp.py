"""The Trainer under torch.distributed: two gloo ranks on the CPU, launched as torchrun would
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Each rank trains on a disjoint, equal share of
every epoch, the ranks end with identical weights, and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import pydata
from pydata.models.checkpoint import latest_checkpoint, load_checkpoint
from pydata.models.metrics import read_log
from pydata.synthetic import class_images

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

SAMPLES = 200  # 150 train: 75 per rank, 4 full batches of 16 each per epoch

RANK_SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    import pydata
    from pydata.models import ResNet
    from pydata.models.checkpoint import seed_everything
    from pydata.models.config import load_config
    from pydata.models.distributed import init_distributed, shutdown_distributed
    from pydata.models.train import build_loaders
    from pydata.models.trainer import Trainer

    out = sys.argv[1]
    config = load_config(None, sys.argv[2:])
    context = init_distributed(config.train.device)
    seed_everything(config.train.seed)
    train, val = build_loaders(config, pydata.MemoryMappedDataset(config.data.path), context)

    class Recorder:
        def __init__(self, loader):
            self.loader, self.seen = loader, []
        def __len__(self):
            return len(self.loader)
        def __iter__(self):
            ids = []
            self.seen.append(ids)
            for batch in self.loader:
                ids.extend(batch["id"].tolist())
                yield batch
        def state_dict(self):
            return self.loader.state_dict()
        def load_state_dict(self, state):
            self.loader.load_state_dict(state)

    recorder = Recorder(train)
    model = ResNet(config.model.num_classes, config.model.depth, config.model.width)
    result = Trainer(model, recorder, config, val_loader=val, context=context).fit()
    torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, f"{out}/params-{context.rank}.pt")
    with open(f"{out}/rank-{context.rank}.json", "w") as f:
        json.dump({"rank": context.rank, "world": context.world_size, "seen": recorder.seen,
                   "steps": result.steps, "val_accuracy": result.val_accuracy,
                   "metrics": None if result.metrics is None else str(result.metrics)}, f)
    shutdown_distributed(context)
''')


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "ds"
    images, labels = class_images(SAMPLES, classes=4, size=8, seed=3)
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ()),
              "id": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=50_000, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels, "id": np.arange(SAMPLES)})
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_train_on_disjoint_shares_to_identical_weights(tmp_path: Path, dataset: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    run = tmp_path / "run"
    overrides = [f"data.path={dataset}", f"train.out_dir={run}", "data.batch_size=16", "data.val_fraction=0.25",
                 "data.num_threads=1", "model.depth=8", "model.width=4", "model.num_classes=4", "train.epochs=2",
                 "train.log_every=2", "train.device=cpu", "train.progress=false", "train.plot=false"]
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo",
               "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path), *overrides], env=env,
                                      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * 4

    train_ids = set(pydata.split_dataset(pydata.MemoryMappedDataset(dataset), 0.25, seed=0)[0].indices.tolist())
    for epoch in range(2):
        first, second = (r["seen"][epoch] for r in ranks)
        assert len(first) == len(second) == 4 * 16
        assert not set(first) & set(second)
        assert set(first) | set(second) <= train_ids
    assert ranks[0]["seen"][0] != ranks[0]["seen"][1]  # a new order each epoch

    params = [torch.load(tmp_path / f"params-{r}.pt", weights_only=True) for r in range(2)]
    saved = load_checkpoint(latest_checkpoint(run) or "")["model"]
    for name, value in params[0].items():
        torch.testing.assert_close(params[1][name], value, rtol=0, atol=0, msg=name)
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0, msg=name)
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]  # all-reduced over both shares

    assert ranks[0]["metrics"] == str(run / "metrics.jsonl") and ranks[1]["metrics"] is None
    records = read_log(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]
    assert all(r["samples_per_s"] > 0 for r in records if r["kind"] == "train")
