"""Trainer: a classification training loop over any pydata loader, that resumes exactly.

One step is autocast forward, cross-entropy, (scaled) backward, optional gradient clipping,
optimiser and scheduler step. Loss and accuracy are summed on the device
(:class:`~.metrics.DeviceMeter`) and read every ``log_every`` steps and at epoch ends, so there
is no host sync per step; the host only times how long it waits for the next batch, which gives
the fraction of the run spent waiting for data. A checkpoint (every ``checkpoint_every`` steps,
at every epoch end and when ``max_steps`` stops the run) holds the model, optimiser, scheduler,
GradScaler, RNG, early-stopping and metric state and the loader's position: a run resumed from
it takes the same batches and computes the same losses as the run that was not interrupted. The
loader's position is its ``state_dict`` (:class:`pydata.Loader`); a loader without one (a torch
DataLoader over pydata's ``EpochSampler``) is set to the epoch and skips the batches already
trained on, which re-reads them: exact, but slower to resume. Under torch.distributed the model
is wrapped in DDP, metrics are all-reduced, and only rank 0 writes files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .checkpoint import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from .config import Config, config_to_dict
from .distributed import DistributedContext, autocast_dtype, resolve_device
from .early_stopping import EarlyStopping
from .metrics import DeviceMeter, FitResult, RunLog, plot_curves
from .optim import build_optimizer, build_scheduler

__all__ = ["FitResult", "Trainer"]


class Trainer:
    """Trains ``model`` on batches (dicts of tensors) from ``train_loader``.

    Args:
        model: A classifier: ``model(inputs)`` returns logits ``[N, classes]``.
        train_loader: A :class:`pydata.Loader` (or any re-iterable of batches with ``len``).
        config: The run's configuration (``optim``, ``schedule``, ``train`` and the field names
            of ``data`` are used here).
        val_loader: Validation batches, evaluated at each epoch end (needed for early stopping).
        context: Rank, world size and device (default: one process on ``train.device``).

    Raises:
        ValueError: Early stopping without ``val_loader``, fp16 without CUDA, or a bad
            optimiser or schedule setting (named).
    """

    def __init__(self, model: nn.Module, train_loader: Any, config: Config, *,
                 val_loader: Any = None, context: DistributedContext | None = None) -> None:
        self.config = config
        self.context = context or DistributedContext(0, 1, 0, resolve_device(config.train.device))
        self.device = self.context.device
        self.model = model.to(self.device)
        self._forward: nn.Module = self.model
        if self.context.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._forward = DistributedDataParallel(self.model, device_ids=ids)
        self.train_loader, self.val_loader = train_loader, val_loader
        if config.train.early_stopping_patience is not None and val_loader is None:
            msg = "train.early_stopping_patience needs validation data (data.val_fraction > 0)"
            raise ValueError(msg)
        self.steps_per_epoch = len(train_loader)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.schedule,
                                         config.train.epochs * self.steps_per_epoch)
        self.amp_dtype = autocast_dtype(config.train.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.stopper = EarlyStopping(config.train.early_stopping_metric, config.train.early_stopping_patience)
        self.window, self.epoch_meter = DeviceMeter(self.device), DeviceMeter(self.device)
        self.step, self.epoch, self.batches_done = 0, 0, 0
        self.out_dir = Path(config.train.out_dir)
        self.log = RunLog(None)
        self.resumed_from: Path | None = None
        self._last_train: dict[str, float] | None = None  # the last finished epoch's metrics
        self._timing = [0.0, 0.0, 0.0]  # this call's samples, seconds, seconds waiting (host)

    # -- the run -----------------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Trains until ``train.epochs``, early stopping or ``train.max_steps``; with
        ``train.resume`` it first continues from the newest checkpoint in ``train.out_dir``."""
        if not self.config.train.resume and latest_checkpoint(self.out_dir) is not None:
            msg = (f"train.out_dir '{self.out_dir}' holds checkpoints of another run: resume it with "
                   "train.resume=true, or choose another train.out_dir")
            raise ValueError(msg)
        keep = self._resume() if self.config.train.resume else 0
        main = self.context.is_main
        self.log = RunLog(self.out_dir / "metrics.jsonl" if main else None, keep=keep)
        checkpoint, last_val, stopped_early = None, None, False
        while self.epoch < self.config.train.epochs:
            if not self._train_epoch():
                checkpoint = self.save_checkpoint()  # max_steps: the run continues from here
                break
            last_val = self._end_epoch()
            checkpoint = self.save_checkpoint()
            if self.stopper.should_stop:
                stopped_early = True
                break
        curves = None
        if self.log.path is not None and self.config.train.plot:
            curves = plot_curves(self.log.path, self.out_dir / "curves.png")
        return self._result(last_val, stopped_early, checkpoint, curves)

    def _train_epoch(self) -> bool:
        """Trains the rest of the current epoch; False when ``max_steps`` stopped it first."""
        self.model.train()
        iterator = self._epoch_iterator()
        bar = tqdm(total=self.steps_per_epoch, initial=self.batches_done, unit="batch",
                   desc=f"epoch {self.epoch + 1}/{self.config.train.epochs}", leave=False,
                   disable=self._progress_disabled())
        log_every, every = max(self.config.train.log_every, 1), self.config.train.checkpoint_every
        began, waited, samples = time.perf_counter(), 0.0, 0
        try:
            while self.config.train.max_steps is None or self.step < self.config.train.max_steps:
                asked = time.perf_counter()
                batch = next(iterator, None)
                if batch is None:
                    return True
                waited += time.perf_counter() - asked
                samples += self._train_step(batch)
                self.step, self.batches_done = self.step + 1, self.batches_done + 1
                bar.update(1)
                if self.step % log_every == 0:
                    self._log_window(bar, samples, time.perf_counter() - began, waited)
                if every > 0 and self.step % every == 0:
                    self.save_checkpoint()
            return False
        finally:
            getattr(iterator, "close", lambda: None)()  # stops the loader's producers early
            bar.close()
            self._timing = [self._timing[0] + samples * self.context.world_size,
                            self._timing[1] + time.perf_counter() - began, self._timing[2] + waited]

    def _epoch_iterator(self) -> Any:
        loader = self.train_loader
        if _is_stateful(loader):
            return iter(loader)
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.epoch)
        iterator = iter(loader)
        for _ in range(self.batches_done):  # a resume without loader state: re-read, discard
            next(iterator)
        return iterator

    def _train_step(self, batch: dict[str, Any]) -> int:
        inputs, labels = self._inputs(batch)
        with self._autocast():
            logits = self._forward(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        scaled: torch.Tensor = self.scaler.scale(loss)
        scaled.backward()  # type: ignore[no-untyped-call]
        if self.config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        count = labels.shape[0]
        correct = (logits.detach().argmax(1) == labels).sum()
        for meter in (self.window, self.epoch_meter):
            meter.add(loss.detach() * count, correct, count)
        return count

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.config.data
        for key, name in (("data.input_field", data.input_field), ("data.label_field", data.label_field)):
            if name not in batch:
                msg = f"the batches have no field {name!r} ({key}); they have {sorted(batch)}"
                raise ValueError(msg)
        inputs = batch[data.input_field].to(self.device, non_blocking=True)
        if not inputs.is_floating_point():  # integer images that no Normalize transform scaled
            inputs = inputs.float().div_(255)
        elif inputs.dtype != torch.float32:  # float16/bfloat16 latents; autocast picks its own
            inputs = inputs.float()
        return inputs, batch[data.label_field].to(self.device, non_blocking=True).long()

    @torch.no_grad()
    def evaluate(self, loader: Any = None) -> dict[str, float]:
        """Mean loss and accuracy over ``loader`` (default: the validation loader), all ranks."""
        self.model.eval()
        meter = DeviceMeter(self.device)
        for batch in loader if loader is not None else self.val_loader:
            inputs, labels = self._inputs(batch)
            with self._autocast():
                logits = self.model(inputs)
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            meter.add(loss, (logits.argmax(1) == labels).sum(), labels.shape[0])
        self.model.train()
        return meter.read()

    # -- metrics -----------------------------------------------------------------------------

    def _log_window(self, bar: Any, samples: int, seconds: float, waited: float) -> None:
        window = self.window.read()
        self.window.reset()
        rate = samples * self.context.world_size / max(seconds, 1e-9)
        record = {"kind": "train", "epoch": self.epoch, "step": self.step, "loss": window["loss"],
                  "accuracy": window["accuracy"], "lr": self.scheduler.get_last_lr()[0],
                  "samples_per_s": rate, "wait_fraction": waited / max(seconds, 1e-9)}
        self.log.write(record)
        bar.set_postfix(loss=f"{window['loss']:.3f}", acc=f"{window['accuracy']:.1%}",
                        samples_s=f"{rate:,.0f}", data_wait=f"{record['wait_fraction']:.0%}", refresh=False)

    def _end_epoch(self) -> dict[str, float] | None:
        train = self.epoch_meter.read()
        val = self.evaluate() if self.val_loader is not None else None
        if val is not None:
            self.stopper.update(val["accuracy" if self.stopper.metric == "val_accuracy" else "loss"], self.epoch)
        self.log.write({"kind": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": train["loss"],
                        "train_accuracy": train["accuracy"], "val_loss": val["loss"] if val else None,
                        "val_accuracy": val["accuracy"] if val else None})
        if self.context.is_main and self.config.train.progress is not False:
            shown = f", validation loss {val['loss']:.4f} accuracy {val['accuracy']:.1%}" if val else ""
            tqdm.write(f"epoch {self.epoch + 1}: train loss {train['loss']:.4f} accuracy {train['accuracy']:.1%}{shown}")
        self.epoch, self.batches_done = self.epoch + 1, 0
        self.epoch_meter.reset()
        self._last_train = train
        return val

    def _result(self, val: dict[str, float] | None, stopped_early: bool, checkpoint: Path | None,
                curves: Path | None) -> FitResult:
        train = self._last_train or self.epoch_meter.read()
        samples, seconds, waited = self._timing
        return FitResult(
            epochs=self.epoch, steps=self.step, train_loss=train["loss"], train_accuracy=train["accuracy"],
            val_loss=val["loss"] if val else None, val_accuracy=val["accuracy"] if val else None,
            best=self.stopper.best, stopped_early=stopped_early,
            samples_per_s=samples / max(seconds, 1e-9), model_samples_per_s=samples / max(seconds - waited, 1e-9),
            wait_fraction=waited / max(seconds, 1e-9), checkpoint=checkpoint, metrics=self.log.path, curves=curves)

    def _progress_disabled(self) -> bool | None:
        if not self.context.is_main:
            return True
        progress = self.config.train.progress
        return None if progress is None else not progress  # None: tqdm shows it on a terminal

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (plain values and tensors: loadable with weights_only)."""
        loader = self.train_loader.state_dict() if _is_stateful(self.train_loader) else None
        return {"step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
                "config": config_to_dict(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "loader": loader, "rng": capture_rng(),
                "early_stopping": self.stopper.state_dict(), "log_lines": self.log.lines,
                "meters": {"window": self.window.state_dict(), "epoch": self.epoch_meter.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from :meth:`state_dict`'s output (the loader's position included)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if state["loader"] is not None and _is_stateful(self.train_loader):
            self.train_loader.load_state_dict(state["loader"])
        restore_rng(state["rng"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.window.load_state_dict(state["meters"]["window"])
        self.epoch_meter.load_state_dict(state["meters"]["epoch"])
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], state["batches_done"]

    def save_checkpoint(self) -> Path | None:
        """Writes a checkpoint of the current step to ``train.out_dir`` (rank 0 only; others
        return None). Call it on every rank: the state is gathered on all of them alike."""
        state = self.state_dict()
        return save_checkpoint(self.out_dir, self.step, state) if self.context.is_main else None

    def _resume(self) -> int:
        """Loads the newest checkpoint, if any; returns how many metric records it saw."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return 0
        state = load_checkpoint(path)
        self.load_state_dict(state)
        self.resumed_from = path
        return int(state["log_lines"])


def _is_stateful(loader: Any) -> bool:
    return hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict")
