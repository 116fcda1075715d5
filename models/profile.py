"""Profiling a model on an example batch: parameters, FLOPs, time and memory per top-level module.

:func:`profile_model` runs three separate passes, so that one measurement does not distort
another: FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` in one forward and
backward pass; memory is measured in a second; time in the last, after warm-up, as the median of
a few runs. Per-module time comes from module hooks, which on CUDA synchronise the device at every
module boundary: the per-module figures are exact about where time goes, at the price of a total
somewhat above an unhooked training step (the overlap between modules is lost).

Memory has two measures. ``saved_bytes`` (any device) is the size of the tensors a module's
forward keeps for its backward (activations, not parameters): what grows with the batch size in
training. ``peak_*_bytes`` (CUDA only, else ``None``) is the rise of the CUDA allocator's peak
above the allocation at the module's entry, during its forward and during its backward.

The example batch is cloned with ``requires_grad=True``, so that the first module's backward hook
fires after its own backward; its backward therefore includes the input gradient (for a
convolution, one more convolution's worth of FLOPs). The model is left as it was found: its
buffers (batch-norm statistics) are restored and its gradients cleared.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["MEMORY_DEFINITIONS", "ModuleProfile", "ProfileResult", "profile_model"]

# on_event(child name, phase (0 forward, 1 backward), begin) from the module hooks.
_EventHandler = Callable[[str, int, bool], None]
_Children = list[tuple[str, nn.Module]]

MEMORY_DEFINITIONS = {
    "saved_bytes": "bytes of the tensors the module's forward saves for backward (activations, "
                   "parameters excluded), distinct storages counted once",
    "peak_forward_bytes": "CUDA only: torch.cuda.max_memory_allocated during the module's forward, "
                          "minus torch.cuda.memory_allocated at its entry",
    "peak_backward_bytes": "CUDA only: the same, during the module's backward",
}


@dataclasses.dataclass(frozen=True)
class ModuleProfile:
    """The figures of one top-level child module (times are medians, in milliseconds)."""

    name: str
    type: str
    parameters: int
    forward_flops: int
    backward_flops: int
    forward_ms: float
    backward_ms: float
    saved_bytes: int
    peak_forward_bytes: int | None
    peak_backward_bytes: int | None


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    """The profile of a model: totals for the whole model, rows for its top-level children.

    ``forward_ms`` / ``backward_ms`` are medians of the whole forward and of the backward of
    ``output.sum()``; time outside the children (e.g. a flatten in ``forward``) is in the totals
    only. ``saved_bytes`` counts a storage that several children save once. See
    :data:`MEMORY_DEFINITIONS` for the memory columns.
    """

    model: str
    input_shape: tuple[int, ...]
    device: str
    repeats: int
    parameters: int
    trainable_parameters: int
    forward_flops: int
    backward_flops: int
    forward_ms: float
    backward_ms: float
    saved_bytes: int
    modules: tuple[ModuleProfile, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, with ``memory_definitions`` saying what the memory
        figures are."""
        result = dataclasses.asdict(self)  # nested rows become dicts too
        result.update(input_shape=list(self.input_shape), modules=list(result["modules"]),
                      memory_definitions=dict(MEMORY_DEFINITIONS))
        return result

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The profile as indented JSON text; also written to ``path`` when one is given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def format_table(self) -> str:
        """A readable table: one row per top-level module and a total row."""
        cuda = bool(self.modules) and self.modules[0].peak_forward_bytes is not None
        header: tuple[str, ...] = ("module", "type", "params", "fwd FLOP", "bwd FLOP", "fwd ms",
                                   "bwd ms", "saved MiB")
        header += ("peak fwd MiB", "peak bwd MiB") if cuda else ()
        total = ModuleProfile("(total)", self.model, self.parameters, self.forward_flops,
                              self.backward_flops, self.forward_ms, self.backward_ms,
                              self.saved_bytes, None, None)
        rows = [header, *(_cells(m)[:len(header)] for m in (*self.modules, total))]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"{self.model} on {list(self.input_shape)} ({self.device}, median of "
                 f"{self.repeats} runs): {self.parameters:,} parameters, "
                 f"{self.trainable_parameters:,} trainable"]
        lines += ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                            for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
        lines.append("saved: activations kept for backward"
                     + ("; peak: CUDA allocator peak above the module's entry" if cuda else ""))
        return "\n".join(lines)


def _cells(m: ModuleProfile) -> tuple[str, ...]:
    mib = [f"{b / 2**20:.2f}" if b is not None else ""
           for b in (m.saved_bytes, m.peak_forward_bytes, m.peak_backward_bytes)]
    return (m.name, m.type, f"{m.parameters:,}", _si(m.forward_flops), _si(m.backward_flops),
            f"{m.forward_ms:.3f}", f"{m.backward_ms:.3f}", *mib)


def _si(value: int) -> str:
    """``653M``, ``10.2K``, ``1.31G``: three significant figures, decimal prefixes."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= factor:
            return f"{value / factor:.3g}{prefix}"
    return str(value)


def profile_model(
    model: nn.Module, example: Tensor, *, warmup: int = 2, repeats: int = 5
) -> ProfileResult:
    """Profiles a training step (forward, then backward of ``output.sum()``) of ``model``.

    Args:
        model: The model, already on the device of ``example``; it is put in training mode for
            the profile and restored afterwards (mode, buffers; gradients cleared).
        example: A floating-point input batch, e.g. ``[N, C, H, W]``; the model must return one
            tensor for it.
        warmup: Untimed runs before timing.
        repeats: Timed runs; each time is the median over them.

    Returns:
        The profile; rows are ``model.named_children()`` in order.

    Raises:
        ValueError: ``example`` is not floating point, ``model`` has no children, or
            ``repeats`` < 1 or ``warmup`` < 0.
        TypeError: The model returns something other than a tensor.
    """
    children = list(model.named_children())
    kind = type(model).__name__
    if not example.is_floating_point():
        msg = f"profile_model needs a floating-point example batch, got dtype {example.dtype}"
        raise ValueError(msg)
    if not children:
        msg = f"profile_model reports per top-level module, and {kind} has no child modules"
        raise ValueError(msg)
    if repeats < 1 or warmup < 0:
        msg = f"profile_model needs repeats >= 1 and warmup >= 0, got {repeats} and {warmup}"
        raise ValueError(msg)
    x = example.detach().clone().requires_grad_(True)
    with _preserved(model):
        flops = _count_flops(model, x, [name for name, _ in children])
        memory = _measure_memory(model, x, children)
        times = _measure_times(model, x, children, warmup, repeats)
    rows = []
    for name, child in children:
        saved, peak_forward, peak_backward = memory[name]
        rows.append(ModuleProfile(name, type(child).__name__, _count(child), *flops[name],
                                  *times[name], saved, peak_forward, peak_backward))
    return ProfileResult(
        model=kind, input_shape=tuple(example.shape), device=str(example.device), repeats=repeats,
        parameters=_count(model), trainable_parameters=_count(model, trainable=True),
        forward_flops=flops[""][0], backward_flops=flops[""][1], forward_ms=times[""][0],
        backward_ms=times[""][1], saved_bytes=memory[""][0], modules=tuple(rows))


def _count(module: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Runs the body in training mode, then restores the mode and buffers and clears gradients."""
    was_training = model.training
    buffers = [b.detach().clone() for b in model.buffers()]
    model.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _step(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if not isinstance(out, Tensor):
        msg = (f"profile_model needs a model that returns one tensor, {type(model).__name__} "
               f"returned {type(out).__name__}")
        raise TypeError(msg)
    return out


def _count_flops(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, tuple[int, int]]:
    """(forward, backward) FLOPs per child name, and for the whole model under ``""``."""
    # FlopCounterMode names modules by their path from the root's class name.
    keys = {"": "Global", **{name: f"{type(model).__name__}.{name}" for name in names}}
    with FlopCounterMode(display=False) as counter:
        out = _step(model, x)
        forward = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
        torch.autograd.backward(out.sum())
        both = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return {name: (forward.get(key, 0), both.get(key, 0) - forward.get(key, 0))
            for name, key in keys.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _module_events(children: _Children, on_event: _EventHandler) -> Iterator[None]:
    """Calls ``on_event(name, phase, begin)`` as each child's forward (phase 0) and backward
    (phase 1) begin and end."""
    handles = []
    for name, child in children:
        begin = functools.partial(_signal, on_event, name, True)
        end = functools.partial(_signal, on_event, name, False)
        handles += [
            child.register_forward_pre_hook(functools.partial(begin, 0)),
            child.register_forward_hook(functools.partial(end, 0)),
            child.register_full_backward_pre_hook(functools.partial(begin, 1)),
            child.register_full_backward_hook(functools.partial(end, 1)),
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _signal(on_event: _EventHandler, name: str, begin: bool, phase: int, *_hook: object) -> None:
    """A module hook (any signature, returns None) that reports one event."""
    on_event(name, phase, begin)


def _measure_times(model: nn.Module, x: Tensor, children: _Children, warmup: int,
                   repeats: int) -> dict[str, tuple[float, float]]:
    """Median (forward, backward) milliseconds per child name; the whole model's under ``""``."""
    runs: list[dict[str, list[float]]] = []
    starts: dict[tuple[str, int], float] = {}

    def on_event(name: str, phase: int, begin: bool) -> None:
        _synchronize(x.device)
        now = time.perf_counter()
        if begin:
            starts[name, phase] = now
        else:
            runs[-1][name][phase] += now - starts.pop((name, phase))

    with _module_events(children, on_event):
        for _ in range(warmup + repeats):
            runs.append({name: [0.0, 0.0] for name in ["", *(n for n, _ in children)]})
            _synchronize(x.device)
            begin = time.perf_counter()
            out = _step(model, x)
            _synchronize(x.device)
            middle = time.perf_counter()
            torch.autograd.backward(out.sum())
            _synchronize(x.device)
            runs[-1][""] = [middle - begin, time.perf_counter() - middle]
            # Fresh gradients every run, so that no run pays for accumulation and others not.
            model.zero_grad(set_to_none=True)
            x.grad = None
    timed = runs[warmup:]
    return {name: (1e3 * statistics.median(r[name][0] for r in timed),
                   1e3 * statistics.median(r[name][1] for r in timed)) for name in timed[0]}


def _measure_memory(model: nn.Module, x: Tensor,
                    children: _Children) -> dict[str, tuple[int, int | None, int | None]]:
    """(saved bytes, CUDA forward peak, CUDA backward peak) per child name; under ``""`` the
    saved bytes of the whole model (storages shared by children counted once)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[str, dict[int, int]] = {name: {} for name in ["", *(n for n, _ in children)]}
    peaks: dict[str, list[int | None]] = {name: [None, None] for name in saved}
    active: list[str] = []
    entry: list[int] = [0]
    cuda = x.device.type == "cuda"

    def on_event(name: str, phase: int, begin: bool) -> None:
        if phase == 0:
            active[:] = [name] if begin else []
        if cuda:
            torch.cuda.synchronize(x.device)
            if begin:
                entry[0] = torch.cuda.memory_allocated(x.device)
                torch.cuda.reset_peak_memory_stats(x.device)
            else:
                peak = torch.cuda.max_memory_allocated(x.device) - entry[0]
                peaks[name][phase] = max(peaks[name][phase] or 0, peak)

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            for name in ["", *active]:
                saved[name][storage.data_ptr()] = storage.nbytes()
        return tensor

    with _module_events(children, on_event):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = _step(model, x)
        torch.autograd.backward(out.sum())
    model.zero_grad(set_to_none=True)
    x.grad = None
    return {name: (sum(saved[name].values()), peaks[name][0], peaks[name][1]) for name in saved}
