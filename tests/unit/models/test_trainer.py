"""The Trainer on small class_images datasets: the loss falls, a resumed run repeats the
uninterrupted one batch for batch and loss for loss, AMP, clipping, optimisers, schedules, early
stopping, metrics read every ``log_every`` steps, checkpoint files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata.models import ResNet
from pydata.models.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, seed_everything
from pydata.models.config import Config, apply_overrides
from pydata.models.distributed import DistributedContext
from pydata.models.early_stopping import EarlyStopping
from pydata.models.metrics import DeviceMeter, read_log
from pydata.models.optim import build_scheduler
from pydata.models.train import build_loaders
from pydata.models.trainer import Trainer
from pydata.synthetic import class_images

CLASSES = 4
SAMPLES = 192  # 144 train (9 batches of 16), 48 validation


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trainer") / "ds"
    images, labels = class_images(SAMPLES, classes=CLASSES, size=8, seed=1)
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ()),
              "id": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=100_000, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels, "id": np.arange(SAMPLES)})
    return path


def _config(tmp_path: Path, dataset_dir: Path, *overrides: str) -> Config:
    base = [f"data.path={dataset_dir}", f"train.out_dir={tmp_path / 'run'}", "data.batch_size=16",
            "data.val_fraction=0.25", "data.num_threads=1", "model.depth=8", "model.width=4",
            f"model.num_classes={CLASSES}", "train.epochs=2", "train.log_every=1", "train.progress=false",
            "train.device=cpu", "train.plot=false"]
    return apply_overrides(Config(), [*base, *overrides])


class _Recorder:
    """A loader that remembers the sample ids of every batch it hands out; it has no state
    methods, so the Trainer resumes it by epoch and batch count, as it would a DataLoader."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.sampler = getattr(loader, "sampler", None)
        self.seen: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            self.seen.append(batch["id"].tolist())
            yield batch


class Recording(_Recorder):
    """A recorder with the wrapped pydata.Loader's state methods: resumed as the Loader is."""

    def state_dict(self) -> dict[str, Any]:
        return dict(self.loader.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


def _trainer(config: Config, loader_kind: str = "loader") -> tuple[Trainer, Any]:
    seed_everything(config.train.seed)
    dataset = pydata.MemoryMappedDataset(config.data.path)
    context = DistributedContext(0, 1, 0, torch.device("cpu"))
    train, val = build_loaders(config, dataset, context)
    if loader_kind == "dataloader":  # torch's DataLoader over the same split: no loader state
        split = train.dataset
        train = pydata.create_dataloader(split, config.data.batch_size, num_workers=0,
                                         seed=config.train.seed, drop_last=True)
    recording = Recording(train) if loader_kind == "loader" else _Recorder(train)
    model = ResNet(config.model.num_classes, config.model.depth, config.model.width)
    return Trainer(model, recording, config, val_loader=val, context=context), recording


def _train_records(out_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_log(out_dir / "metrics.jsonl") if r["kind"] == "train"]


def test_the_loss_falls_and_validation_beats_chance(tmp_path: Path, dataset_dir: Path) -> None:
    config = _config(tmp_path, dataset_dir, "train.epochs=4", "train.log_every=3", "optim.lr=0.01",
                     "train.plot=true")
    trainer, _ = _trainer(config)
    result = trainer.fit()
    losses = [r["loss"] for r in _train_records(tmp_path / "run")]
    assert len(losses) == 4 * 9 // 3
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3])
    assert result.val_accuracy is not None and result.val_accuracy > 2.0 / CLASSES
    assert result.epochs == 4 and result.steps == 36 and not result.stopped_early
    assert result.curves is not None and result.curves.stat().st_size > 10_000
    assert (tmp_path / "run" / "metrics.jsonl") == result.metrics
    epochs = [r for r in read_log(result.metrics) if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3]
    assert all(0.0 <= r["wait_fraction"] <= 1.0 and r["samples_per_s"] > 0 for r in _train_records(tmp_path / "run"))


@pytest.mark.parametrize(("loader_kind", "stop_at"), [("loader", 5), ("loader", 9), ("dataloader", 13)])
def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path: Path, dataset_dir: Path,
                                                     loader_kind: str, stop_at: int) -> None:
    straight_config = _config(tmp_path / "a", dataset_dir, "train.checkpoint_every=4")
    straight, straight_seen = _trainer(straight_config, loader_kind)
    straight.fit()

    config = _config(tmp_path / "b", dataset_dir, "train.checkpoint_every=4", f"train.max_steps={stop_at}")
    first, first_seen = _trainer(config, loader_kind)
    stopped = first.fit()
    assert stopped.steps == stop_at and stopped.checkpoint == latest_checkpoint(tmp_path / "b" / "run")
    torch.manual_seed(1234)  # a resumed run must not depend on the RNG it starts with
    resumed, resumed_seen = _trainer(apply_overrides(config, ["train.max_steps=null", "train.resume=true"]),
                                     loader_kind)
    result = resumed.fit()
    assert resumed.resumed_from == stopped.checkpoint
    assert result.steps == 18 and result.epochs == 2

    if loader_kind == "loader":
        assert first_seen.seen + resumed_seen.seen == straight_seen.seen
    else:  # the DataLoader re-reads the skipped batches of the interrupted epoch
        assert first_seen.seen + resumed_seen.seen[stop_at - 9:] == straight_seen.seen
    want, got = read_log(tmp_path / "a" / "run" / "metrics.jsonl"), read_log(tmp_path / "b" / "run" / "metrics.jsonl")
    assert [r["kind"] for r in got] == [r["kind"] for r in want]
    for key in ("loss", "accuracy", "lr", "val_loss", "val_accuracy", "train_loss"):
        np.testing.assert_allclose([r.get(key, 0) for r in got], [r.get(key, 0) for r in want],
                                   rtol=1e-5, err_msg=key)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_runs_on_the_cpu(tmp_path: Path, dataset_dir: Path) -> None:
    trainer, _ = _trainer(_config(tmp_path, dataset_dir, "train.amp=bf16", "train.max_steps=3"))
    dtypes: list[torch.dtype] = []
    trainer.model.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    result = trainer.fit()
    assert dtypes[:3] == [torch.bfloat16] * 3
    assert np.isfinite(result.train_loss)
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    with pytest.raises(ValueError, match="train.amp=fp16 needs a CUDA device"):
        _trainer(_config(tmp_path / "x", dataset_dir, "train.amp=fp16"))


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_the_gradient_norm(tmp_path: Path, dataset_dir: Path, clip: float | None) -> None:
    trainer, _ = _trainer(_config(tmp_path, dataset_dir, f"optim.grad_clip={'null' if clip is None else clip}",
                                  "train.max_steps=1"))
    trainer.fit()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()
                                                 if p.grad is not None]))
    if clip is None:
        assert norm > 1e-2
    else:
        assert norm <= clip * (1 + 1e-4)


@pytest.mark.parametrize(("name", "kind"), [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_both_optimisers_train(tmp_path: Path, dataset_dir: Path, name: str, kind: type) -> None:
    trainer, _ = _trainer(_config(tmp_path, dataset_dir, f"optim.name={name}", "train.epochs=1",
                                  "optim.lr=0.02", "schedule.name=constant"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.fit()
    assert isinstance(trainer.optimizer, kind)
    assert np.isfinite(result.train_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    decays = sorted(g["weight_decay"] for g in trainer.optimizer.param_groups)
    assert decays == [0.0, trainer.config.optim.weight_decay]  # none on biases and norms


def _lrs(name: str, steps: int = 20) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    schedule = apply_overrides(Config(), [f"schedule.name={name}", "schedule.warmup_fraction=0.2",
                                          "schedule.final_lr_fraction=0.05"]).schedule
    scheduler = build_scheduler(optimizer, schedule, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedules_warm_up_then_follow_their_shape() -> None:
    cosine, onecycle, constant = _lrs("cosine"), _lrs("onecycle"), _lrs("constant")
    for lrs in (cosine, onecycle, constant):
        assert lrs[0] < lrs[1] < lrs[3] and max(lrs) == pytest.approx(1.0)  # warm-up to the peak
    assert constant[4:] == [1.0] * 16
    for lrs in (cosine, onecycle):
        peak = lrs.index(max(lrs))
        assert peak in (3, 4) and all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
        assert lrs[-1] < 0.1
    assert cosine[-1] >= 0.05
    with pytest.raises(ValueError, match="needs at least 4 steps"):
        _lrs("onecycle", steps=3)


def test_early_stopping_stops_a_run_that_does_not_improve(tmp_path: Path, dataset_dir: Path) -> None:
    trainer, _ = _trainer(_config(tmp_path, dataset_dir, "train.epochs=10", "optim.lr=1e-12",
                                  "train.early_stopping_patience=1", "train.early_stopping_metric=val_loss",
                                  "schedule.name=constant", "schedule.warmup_fraction=0"))
    result = trainer.fit()
    assert result.stopped_early and result.epochs == 2 and result.steps == 18
    assert result.best == pytest.approx(trainer.stopper.best) and trainer.stopper.best_epoch == 0
    assert [r["epoch"] for r in read_log(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "epoch"] == [0, 1]


def test_early_stopping_counts_epochs_without_strict_improvement() -> None:
    stopper = EarlyStopping("val_accuracy", patience=2)
    assert [stopper.update(v, e) for e, v in enumerate([0.5, 0.6, 0.6, 0.7, 0.65, 0.7])] == \
        [False, False, False, False, False, True]
    assert (stopper.best, stopper.best_epoch) == (0.7, 3)
    with pytest.raises(ValueError, match="needs validation data"):
        Trainer(ResNet(2, 8, 4), [], apply_overrides(Config(), ["train.early_stopping_patience=2"]))


def test_metrics_are_read_every_log_every_steps(tmp_path: Path, dataset_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real_read = DeviceMeter.read
    monkeypatch.setattr(DeviceMeter, "read", lambda self: reads.append(1) or real_read(self))
    trainer, _ = _trainer(_config(tmp_path, dataset_dir, "train.log_every=6"))
    trainer.fit()
    assert len(reads) == 18 // 6 + 2 * 2  # windows, plus each epoch's train and validation sums


def test_checkpoints_are_atomic_files_and_a_fresh_run_refuses_them(tmp_path: Path, dataset_dir: Path) -> None:
    for step in (3, 10, 7):
        save_checkpoint(tmp_path, step, {"model": {}, "step": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000000007.pt", "checkpoint-000000010.pt"]
    assert load_checkpoint(latest_checkpoint(tmp_path) or "")["step"] == 10
    (tmp_path / "checkpoint-000000011.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint-000000011\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint-000000011.pt")

    config = _config(tmp_path / "x", dataset_dir, "train.max_steps=2")
    _trainer(config)[0].fit()
    with pytest.raises(ValueError, match="holds checkpoints of another run: resume it with train.resume=true"):
        _trainer(config)[0].fit()
    state = load_checkpoint(latest_checkpoint(tmp_path / "x" / "run") or "")
    assert state["step"] == 2 and state["loader"]["consumed"] == 32
    assert json.loads((tmp_path / "x" / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_run_training_trains_on_float16_latents(tmp_path: Path) -> None:
    """A dataset of cached latents (float16, 4 channels) trains by pointing the config at it."""
    from pydata.models.train import run_training
    from pydata.synthetic import smooth_latents

    latents = smooth_latents(96, 4, 8, seed=0)
    labels = (latents[:, 0].astype(np.float32).mean(axis=(1, 2)) > 0).astype(np.int64)
    with pydata.ShardWriter(tmp_path / "latents", {"latent": pydata.Field("float16", (4, 8, 8)),
                                                   "label": pydata.Field("int64", ())}, progress=False) as writer:
        writer.write_batch({"latent": latents, "label": labels})
    config = apply_overrides(_config(tmp_path, tmp_path / "latents"), [
        "data.input_field=latent", "model.in_channels=4", "model.num_classes=2", "data.mean=[0.0]",
        "data.std=[1.0]", "data.val_fraction=0.25", "train.epochs=1"])
    result = run_training(config)
    assert result.steps == 72 // 16 and np.isfinite(result.train_loss) and result.val_accuracy is not None
    assert (tmp_path / "run" / "config.yaml").read_text().count("input_field: latent") == 1
