"""Where a training process runs: its device, and its rank under torchrun.

torchrun (or any launcher) describes a rank by the environment: ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. With ``WORLD_SIZE`` above 1,
:func:`init_distributed` joins the process group, with NCCL when the device is CUDA (each rank
on GPU ``LOCAL_RANK``) and gloo on the CPU. pydata's Loader reads the rank and world size from
the initialised group by itself and gives each rank a disjoint, equal share of every epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "autocast_dtype", "init_distributed", "resolve_device",
           "shutdown_distributed"]

# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively (x86: AVX512-BF16 or AMX; Arm: BF16).
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@dataclass(frozen=True)
class DistributedContext:
    """This process's place: ``rank`` of ``world_size`` on ``device``.

    Attributes:
        started_here: Whether :func:`init_distributed` created the process group (and so
            :func:`shutdown_distributed` destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    started_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, metrics and plots."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA (GPU ``local_rank``) when available, else the CPU; else ``name`` itself.

    Raises:
        ValueError: A CUDA device asked for where torch has no CUDA.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            msg = f"train.device is {name!r}, but torch has no CUDA device here"
            raise ValueError(msg)
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (Linux; elsewhere assumed not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return bool(_BF16_FLAGS & set(line.partition(":")[2].split()))
    except OSError:
        pass
    return False


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast's dtype for ``train.amp`` on ``device`` (None: full precision).

    ``auto`` is bfloat16 on CUDA devices that support it, else float16 (with a GradScaler); on
    the CPU it is bfloat16 where the CPU has native bfloat16 instructions (measured on an
    AVX512-BF16 core: ResNet-8 training twice as fast as float32) and full precision elsewhere,
    where bfloat16 is emulated and slower.

    Raises:
        ValueError: ``fp16`` on a CPU (loss scaling is a CUDA feature here).
    """
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if mode == "bf16" else torch.float16
    if mode == "fp16":
        msg = f"train.amp=fp16 needs a CUDA device (it trains with a GradScaler); use bf16 on {device}"
        raise ValueError(msg)
    if mode == "auto":
        return torch.bfloat16 if _cpu_has_bf16() else None
    return torch.bfloat16


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        msg = f"environment variable {name} must be an integer, got {text!r}"
        raise ValueError(msg) from None


def init_distributed(device: str = "auto") -> DistributedContext:
    """Joins the torchrun process group when ``WORLD_SIZE`` > 1 (or uses one already joined).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; under torchrun a plain
            ``"cuda"`` means GPU ``LOCAL_RANK``.

    Raises:
        ValueError: Malformed ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or CUDA asked for without it.
    """
    local_rank = _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext(0, 1, local_rank, resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved,
                              started_here=True)


def shutdown_distributed(context: DistributedContext) -> None:
    """Leaves the process group if :func:`init_distributed` joined it."""
    if context.started_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
