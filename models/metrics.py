"""Training metrics: summed on the device, written as JSON lines, drawn as curves.

:class:`DeviceMeter` keeps the loss sum, correct predictions and sample count as tensors on the
training device and adds to them without a host sync; the host reads them (one transfer, and
one ``all_reduce`` under torch.distributed) only when :meth:`DeviceMeter.read` is called, every
``log_every`` steps and at the end of an epoch. The trade-off: a progress bar shows a loss that
is up to ``log_every`` steps old, so the device never waits for Python. :class:`RunLog` appends
one JSON object per line and can cut itself back to a checkpoint's line count on resume, so a
resumed run's log reads like the uninterrupted run's; :func:`plot_curves` draws it to a PNG.
:class:`FitResult` is the summary a run returns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DeviceMeter", "FitResult", "RunLog", "plot_curves", "read_log"]


@dataclass(frozen=True)
class FitResult:
    """What a :meth:`~.trainer.Trainer.fit` call did. Rates count samples of every rank.

    Attributes:
        epochs, steps: Epochs finished and optimiser steps taken, resumed ones included.
        val_loss, val_accuracy: Of the last finished epoch (None without validation data).
        best: Best value of ``train.early_stopping_metric`` so far (None without validation).
        checkpoint, metrics, curves: Files written (None on ranks other than 0).
        samples_per_s: Training samples per second of training loop (data waits included).
        model_samples_per_s: The same with the time spent waiting for data left out: what the
            model would reach with an infinitely fast loader.
        wait_fraction: Share of the training loop's time spent waiting for the next batch.
    """

    epochs: int
    steps: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    best: float | None
    stopped_early: bool
    samples_per_s: float
    model_samples_per_s: float
    wait_fraction: float
    checkpoint: Path | None
    metrics: Path | None
    curves: Path | None


class DeviceMeter:
    """Running sums of loss, correct predictions and samples, on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        """Adds a batch: the summed loss and the correct count (device tensors), and its size."""
        self._sums[0] += loss_sum.detach().to(torch.float64)
        self._sums[1] += correct.detach().to(torch.float64)
        self._sums[2] += count

    def reset(self) -> None:
        self._sums.zero_()

    def read(self) -> dict[str, float]:
        """Mean loss, accuracy and sample count over every rank (a collective call under
        torch.distributed: every rank must make it at the same point)."""
        sums = self._sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        loss_sum, correct, count = sums.tolist()  # the one host sync
        if not count:
            return {"loss": float("nan"), "accuracy": float("nan"), "samples": 0.0}
        return {"loss": loss_sum / count, "accuracy": correct / count, "samples": count}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sums": self._sums.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._sums.copy_(state["sums"])


class RunLog:
    """An append-only JSON-lines file of metric records (``path=None``: records are only
    counted, as on every rank but 0).

    Args:
        path: The file; created, or cut back to its first ``keep`` records.
        keep: Records of an earlier run to keep: on resume, those its checkpoint saw (later
            ones belong to the part of the run that is repeated).

    Raises:
        ValueError: The file holds fewer than ``keep`` records (names it).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, keep: int = 0) -> None:
        self.path = Path(path) if path is not None else None
        self.lines = keep
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self.path.read_text().splitlines(keepends=True)[:keep] if keep and self.path.exists() else []
        if len(kept) != keep:
            msg = f"{self.path}: the checkpoint saw {keep} metric records, the file holds {len(kept)}"
            raise ValueError(msg)
        self.path.write_text("".join(kept))

    def write(self, record: dict[str, Any]) -> None:
        """Appends ``record`` as one line and flushes it."""
        self.lines += 1
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(log: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Draws a run's training curves to a PNG: loss and accuracy against the step (training
    windows and validation at epoch ends), and the learning rate.

    Returns:
        ``out`` as a path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log)
    steps = [r for r in records if r.get("kind") == "train"]
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("val_loss") is not None]
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    for axis, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        axis.plot([r["step"] for r in steps], [r[key] for r in steps], ".-", label=f"train {label}", lw=1)
        axis.plot([r["step"] for r in epochs], [r[f"val_{key}"] for r in epochs], "o-",
                  label=f"validation {label}")
        axis.set(xlabel="step", ylabel=label, title=label)
        axis.grid(alpha=0.3)
        axis.legend()
    lr_ax.plot([r["step"] for r in steps], [r["lr"] for r in steps], ".-")
    lr_ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    lr_ax.grid(alpha=0.3)
    path = Path(out)
    figure.savefig(path, dpi=100)
    return path
