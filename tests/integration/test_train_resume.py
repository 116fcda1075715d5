"""``pydata train CONFIG [overrides]`` end to end: a run killed after its first checkpoint and
resumed with ``train.resume=true`` ends with the metrics and weights of the run that was never
interrupted; config mistakes are one ``pydata: error:`` line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pydata
from pydata.cli import main
from pydata.models.checkpoint import latest_checkpoint, load_checkpoint
from pydata.models.metrics import read_log
from pydata.synthetic import class_images

pytestmark = pytest.mark.integration

CONFIG = """\
model: {depth: 8, width: 4, num_classes: 4}
data: {batch_size: 16, val_fraction: 0.25, num_threads: 1}
optim: {name: sgd, lr: 0.05}
schedule: {name: cosine, warmup_fraction: 0.2}
train: {epochs: 3, log_every: 2, checkpoint_every: 3, device: cpu, progress: false, plot: false}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train") / "ds"
    images, labels = class_images(192, classes=4, size=8, seed=2)
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=50_000, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels})
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, dataset: Path, config_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", str(config_file), f"data.path={dataset}", f"train.out_dir={straight}"]) == 0
    out = capsys.readouterr().out
    assert "trained to epoch 3, step 27" in out and f"metrics: {straight / 'metrics.jsonl'}" in out

    code = "import sys; from pydata.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "train", str(config_file), f"data.path={dataset}",
            f"train.out_dir={killed}"]
    proc = subprocess.Popen(argv, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while latest_checkpoint(killed) is None and proc.poll() is None:
        time.sleep(0.005)
    proc.kill()  # SIGKILL: no clean-up, possibly mid-step or mid-write of the next checkpoint
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err.decode()[-2000:]
    stopped_at = load_checkpoint(latest_checkpoint(killed) or "")["step"]
    assert 3 <= stopped_at < 27

    assert main(["train", str(config_file), f"data.path={dataset}", f"train.out_dir={killed}",
                 "train.resume=true"]) == 0
    assert "trained to epoch 3, step 27" in capsys.readouterr().out
    want, got = read_log(straight / "metrics.jsonl"), read_log(killed / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in got] == [(r["kind"], r["step"]) for r in want]
    for key in ("loss", "accuracy", "lr", "train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([r.get(key, 0) for r in got], [r.get(key, 0) for r in want], rtol=1e-5,
                                   err_msg=key)
    final = [load_checkpoint(latest_checkpoint(d) or "")["model"] for d in (straight, killed)]
    for name, value in final[0].items():
        torch.testing.assert_close(final[1][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert (killed / "config.yaml").read_text() == (straight / "config.yaml").read_text().replace(
        "resume: false", "resume: true").replace(str(straight), str(killed))


@pytest.mark.parametrize(("overrides", "needle"), [
    (["optim.lr=fast"], "run.yaml: config key 'optim.lr' must be float, got str 'fast'"),
    (["train.epoch=3"], "unknown config key 'train.epoch'; 'train' has ["),
    (["nonsense"], "config override must look like section.key=value, got 'nonsense'"),
    (["data.input_field=pixels"], "data.input_field is 'pixels', but the dataset at"),
    (["model.in_channels=1"], "model.in_channels is 1, but 'image' has 3 channels"),
])
def test_config_mistakes_are_one_line(tmp_path: Path, dataset: Path, config_file: Path, overrides: list[str],
                                      needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", str(config_file), f"data.path={dataset}", f"train.out_dir={tmp_path / 'run'}", *overrides]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pydata: error: ")
    assert needle in err[0]


def test_a_second_fresh_run_into_the_same_directory_is_refused(tmp_path: Path, dataset: Path, config_file: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", str(config_file), f"data.path={dataset}", f"train.out_dir={tmp_path / 'run'}",
            "train.max_steps=2"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 1
    assert "holds checkpoints of another run: resume it with train.resume=true" in capsys.readouterr().err
    assert main([*argv, "train.resume=true", "train.max_steps=4"]) == 0
    assert "step 4" in capsys.readouterr().out
