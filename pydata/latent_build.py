"""Writing a latent cache: the encoder loop, the codec's measured error, the sizes on disk.

:func:`write_latents` is the engine behind :meth:`pydata.LatentCache.build`, which adds the
checks on the output directory and the atomic rename. The error is measured here, while the
encoder's float32 output is at hand, rather than by reading the cache back, which would need the
encoder run twice or every float32 latent kept. The price is a second encode of each latent (the
writer encodes its own copy): the codec is deterministic, so both give the same blobs, and an
encode costs little next to an encoder's forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from pydata._core import decode_batch, encode
from pydata.errors import FormatError
from pydata.format.index import DatasetIndex
from pydata.format.reader import ShardReader
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter
from pydata.latent_stats import METADATA_KEY, LatentStats
from pydata.loader.loader import Loader

__all__ = ["STORED_DTYPES", "Encoder", "module_of", "write_latents"]

STORED_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}

Encoder = Callable[[torch.Tensor], torch.Tensor]


def write_latents(encoder: Encoder, source: Any, directory: Path, *, codec: str, dtype: str,
                  batch_size: int, input_field: str, latent_field: str, keep_fields: Sequence[str],
                  device: torch.device, progress: bool, shard_bytes: int) -> LatentStats:
    """Encodes every sample of ``source`` in order and writes a new dataset to ``directory``:
    the latents under ``latent_field`` plus ``keep_fields``, with the stats in its index
    metadata. Arguments are as for :meth:`pydata.LatentCache.build`, already checked; a failure
    leaves no index in ``directory``."""
    run = _Run(source, directory, codec, dtype, latent_field, keep_fields, shard_bytes)
    loader = Loader(source, batch_size, shuffle=False, fields=[input_field, *keep_fields],
                    num_threads=1, prefetch=2, pin_memory=device.type == "cuda", rank=0, world_size=1)
    try:
        with tqdm(total=len(source), unit="sample", desc="encoding latents",
                  disable=not progress, leave=False) as bar, _eval_mode(encoder), torch.inference_mode():
            for batch in loader:
                run.add(batch, _encode(encoder, batch[input_field], device, run.shape, run.samples))
                bar.update(len(batch[input_field]))
    except BaseException:
        if run.writer is not None:
            run.writer.abort()
        raise
    return run.finish(_name(encoder), input_field)


def module_of(encoder: Encoder) -> torch.nn.Module | None:
    """The module behind ``encoder``: itself, or the owner of a bound method such as ``ae.encode``."""
    module = encoder if isinstance(encoder, torch.nn.Module) else getattr(encoder, "__self__", None)
    return module if isinstance(module, torch.nn.Module) else None


@contextlib.contextmanager
def _eval_mode(encoder: Encoder) -> Iterator[None]:
    """``eval()`` for the block (batch norm and dropout act as in inference), then the module's
    previous mode again."""
    module = module_of(encoder)
    training = module is not None and module.training
    if module is not None and training:
        module.eval()
    try:
        yield
    finally:
        if module is not None and training:
            module.train()


def _encode(encoder: Encoder, inputs: torch.Tensor, device: torch.device,
            shape: tuple[int, ...] | None, first: int) -> torch.Tensor:
    """One batch through the encoder: uint8 scaled to [0, 1], others as float32; the latents
    come back as float32 on the CPU, checked to be one per input and of the cache's shape."""
    x = inputs.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    z = encoder(x)
    n = len(inputs)
    if not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[0] != n:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        msg = f"LatentCache.build: the encoder must return [N, ...] latents for N={n} inputs, got {got}"
        raise ValueError(msg)
    if shape is not None and tuple(z.shape[1:]) != shape:
        msg = (f"LatentCache.build: samples {first}..{first + n - 1}: latents of shape "
               f"{tuple(z.shape[1:])}, earlier ones {shape}")
        raise ValueError(msg)
    return z.detach().float().cpu().contiguous()


class _Run:
    """The state of one build: the writer (opened with the first batch, when the latent shape is
    known), the error sums and the sample count."""

    def __init__(self, source: Any, directory: Path, codec: str, dtype: str, latent_field: str,
                 keep_fields: Sequence[str], shard_bytes: int) -> None:
        self.source, self.directory, self.shard_bytes = source, directory, shard_bytes
        self.codec, self.dtype, self.latent_field = codec, dtype, latent_field
        self.keep_fields = list(keep_fields)
        self.writer: ShardWriter | None = None
        self.shape: tuple[int, ...] | None = None
        self.samples, self.max_abs, self.err2, self.ref2 = 0, 0.0, 0.0, 0.0

    def add(self, batch: dict[str, Any], z: torch.Tensor) -> None:
        if self.writer is None:
            self.shape = tuple(z.shape[1:])
            schema = {self.latent_field: Field(self.dtype, self.shape, codec=self.codec),
                      **{k: self.source.index.schema[k] for k in self.keep_fields}}
            self.writer = ShardWriter(self.directory, schema, shard_bytes=self.shard_bytes, progress=False)
        stored = _stored(z, self.dtype)
        self._accumulate(z.numpy(), self._roundtrip(stored))
        self.writer.write_batch({self.latent_field: stored, **{k: batch[k] for k in self.keep_fields}})
        self.samples += len(z)

    def _roundtrip(self, stored: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """The latents as a reader will get them back."""
        tag = "bfloat16" if self.dtype == "bfloat16" else None
        try:
            blobs = [encode(row, self.codec, dtype=tag) for row in stored]
        except FormatError as exc:
            msg = f"LatentCache.build: samples {self.samples}..{self.samples + len(stored) - 1}: {exc}"
            raise FormatError(msg) from exc
        decoded = np.empty_like(stored)
        decode_batch(blobs, decoded)
        if self.dtype == "bfloat16":
            return (decoded.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return decoded.astype(np.float64)

    def _accumulate(self, reference: npt.NDArray[np.float32], decoded: npt.NDArray[np.float64]) -> None:
        ref = reference.astype(np.float64)
        error = decoded - ref
        if error.size:
            self.max_abs = max(self.max_abs, float(np.abs(error).max()))
        self.err2 += float(np.vdot(error, error))
        self.ref2 += float(np.vdot(ref, ref))

    def finish(self, encoder: str, input_field: str) -> LatentStats:
        """Closes the writer, measures the latent field on disk and rewrites the index with the
        stats (the caller's directory is not yet visible, so no reader sees the first index)."""
        assert self.writer is not None and self.shape is not None
        index = self.writer.close()
        nbytes = 0
        for entry in index.shards:
            reader = ShardReader(self.directory / entry.file, entry, index.schema)
            nbytes += reader.section(self.latent_field).nbytes
            reader.close()
        elements = self.samples * math.prod(self.shape)
        where = getattr(self.source, "path", None) or getattr(self.source, "remote", None)
        stats = LatentStats(self.latent_field, self.codec, self.dtype, self.shape, self.samples,
                            self.max_abs, math.sqrt(self.err2 / self.ref2) if self.ref2 else 0.0,
                            nbytes, 2 * elements, 4 * elements, encoder, input_field,
                            None if where is None else str(where))
        DatasetIndex(index.schema, index.shards, {METADATA_KEY: stats.to_json()}).write(self.directory)
        return stats


def _stored(z: torch.Tensor, dtype: str) -> npt.NDArray[Any]:
    """Float32 latents as the stored dtype's numpy array (bfloat16 as uint16 bits)."""
    converted = z.to(STORED_DTYPES[dtype])
    if dtype == "bfloat16":
        return converted.view(torch.int16).numpy().view(np.uint16)
    return converted.numpy()


def _name(encoder: Encoder) -> str:
    owner = getattr(encoder, "__self__", None)
    if owner is not None:
        return f"{type(owner).__name__}.{getattr(encoder, '__name__', 'encode')}"
    return str(getattr(encoder, "__qualname__", type(encoder).__name__))
