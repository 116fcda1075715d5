"""Training checkpoints on disk, and the random-number state a resumed run must restore.

A checkpoint is one ``torch.save`` file, ``checkpoint-<step>.pt`` in the run directory, written
atomically: to a temporary name in the same directory, flushed to disk, then renamed over the
final name, so a run killed mid-write leaves the previous checkpoint intact and never a torn
one. Only the newest ``keep`` checkpoints are kept. Files are loaded with
``weights_only=True``: every value in them is a tensor or a plain Python value (the numpy RNG
key is stored as a tensor for that reason), so loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "checkpoint_path", "latest_checkpoint", "load_checkpoint", "restore_rng",
           "save_checkpoint", "seed_everything"]

_NAME = re.compile(r"checkpoint-(\d+)\.pt")


def seed_everything(seed: int) -> None:
    """Seeds python ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The state of every global generator a training step may draw from."""
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(numpy_state["state"]["key"]).astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restores what :func:`capture_rng` captured (CUDA only where both runs have CUDA)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state({"bit_generator": saved["bit_generator"], "has_gauss": saved["has_gauss"],
                         "gauss": saved["gauss"],
                         "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """Where the checkpoint of global step ``step`` lives in ``directory``."""
    return Path(directory) / f"checkpoint-{step:09d}.pt"


def save_checkpoint(directory: str | os.PathLike[str], step: int, state: dict[str, Any],
                    *, keep: int = 2) -> Path:
    """Writes ``state`` atomically as the checkpoint of ``step`` and keeps the newest ``keep``.

    Returns:
        The checkpoint's path.
    """
    final = checkpoint_path(directory, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    descriptor = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the rename itself survives a crash
    finally:
        os.close(descriptor)
    for old in _checkpoints(final.parent)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def _checkpoints(directory: Path) -> list[Path]:
    """The checkpoints in ``directory``, oldest first."""
    found = [(int(m.group(1)), p) for p in directory.glob("checkpoint-*.pt")
             if (m := _NAME.fullmatch(p.name)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint in ``directory``, or None when there is none."""
    path = Path(directory)
    found = _checkpoints(path) if path.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Loads a checkpoint onto the CPU (tensors move to their device when loaded into objects).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a pydata training checkpoint (names it).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        msg = f"{path}: not a readable checkpoint: {' '.join(str(exc).split())[:200]}"
        raise ValueError(msg) from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        msg = f"{path}: not a pydata training checkpoint (no model state or step)"
        raise ValueError(msg)
    return state
