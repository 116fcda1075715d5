"""Early stopping on a validation metric, with the state a resumed run carries on from.

The run stops once the metric has not improved on its best value for ``patience`` epochs in a
row. "Improved" means strictly better (higher accuracy, lower loss): a plateau counts against
the patience, so a run that has stopped learning ends. Without a patience the best value is
still tracked, for the report.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Tracks the best value of ``metric`` and says when to stop.

    Args:
        metric: ``"val_accuracy"`` (higher is better) or ``"val_loss"`` (lower is better).
        patience: Epochs without improvement before stopping (None: never stop).

    Raises:
        ValueError: An unknown metric or a patience below 1.

    Example:
        >>> stopper = EarlyStopping("val_loss", patience=2)
        >>> [stopper.update(v, epoch) for epoch, v in enumerate([1.0, 0.8, 0.9, 0.8])]
        [False, False, False, True]
        >>> stopper.best, stopper.best_epoch
        (0.8, 1)
    """

    def __init__(self, metric: str, patience: int | None) -> None:
        if metric not in ("val_accuracy", "val_loss"):
            msg = f"early stopping metric must be 'val_accuracy' or 'val_loss', got {metric!r}"
            raise ValueError(msg)
        if patience is not None and patience < 1:
            msg = f"train.early_stopping_patience must be >= 1 (or null), got {patience}"
            raise ValueError(msg)
        self.metric, self.patience = metric, patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    @property
    def should_stop(self) -> bool:
        """Whether the patience has run out."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def update(self, value: float, epoch: int) -> bool:
        """Records ``value`` for ``epoch``; returns :attr:`should_stop`."""
        better = self.best is None or (value > self.best if self.metric == "val_accuracy" else value < self.best)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return self.should_stop

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
