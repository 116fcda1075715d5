"""The compressed latent cache: an encoder's output over a dataset, computed once, stored with a codec.

A model trained on top of a frozen encoder (a latent diffusion model on an autoencoder's latents)
would otherwise run that encoder on the same images every epoch. :meth:`LatentCache.build` runs it
once, in dataset order, and writes the latents with a codec (``int8+lz4`` by default), recording
in the index metadata the error the stored latents carry against the encoder's float32 output and
the space saved against raw float16 and float32, so the numbers travel with the data (``pydata
inspect`` shows them). A cache is an ordinary dataset: reading it is a
:class:`pydata.MemoryMappedDataset`, whose compressed latents decode in C++ threads straight into
the batch buffer. The trade-off: a quantising codec gives up a bounded, recorded amount of
precision for a cache that is several times smaller, so it stays in the page cache and moves
fewer bytes per batch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pydata._core import CODECS
from pydata.datasets.mmap import MemoryMappedDataset
from pydata.errors import FormatError
from pydata.format.atomic import fsync_directory, temp_name
from pydata.format.index import INDEX_NAME, read_index
from pydata.format.reader import IO
from pydata.format.writer import DEFAULT_SHARD_BYTES
from pydata.latent_build import STORED_DTYPES, Encoder, module_of, write_latents
from pydata.latent_stats import METADATA_KEY, LatentStats

__all__ = ["METADATA_KEY", "LatentCache", "LatentStats"]


class LatentCache:
    """An open latent cache: its :class:`MemoryMappedDataset` and its :class:`LatentStats`.

    A cache *has* a dataset rather than *being* one: the dataset stays the one type that every
    loader, DataLoader worker and pickle path already knows (``MemoryMappedDataset(path)`` opens
    a cache too), and this class adds only what is particular to a cache, its provenance and its
    error.

    Args:
        path: The cache directory.
        fields: Fields to read (default: all).
        io: ``"mmap"`` or ``"read"``, as for :class:`MemoryMappedDataset`.

    Attributes:
        dataset: The cache as a dataset (give it to ``pydata.Loader`` or ``create_dataloader``).
        stats: What the cache holds, its error and its size.

    Raises:
        FileNotFoundError: No dataset at ``path``.
        pydata.FormatError: The dataset is not a latent cache (its metadata has no stats).

    Example:
        >>> cache = LatentCache.build(ae.encode, "data/train", "data/latents")  # doctest: +SKIP
        >>> cache.stats.ratio_fp16, cache.stats.rel_l2                         # doctest: +SKIP
        (3.6, 0.004)
        >>> loader = pydata.Loader(cache.dataset, batch_size=256)              # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str] | None = None,
                 *, io: IO = "mmap") -> None:
        self.dataset = MemoryMappedDataset(path, fields, io=io)
        stats = self.dataset.index.metadata.get(METADATA_KEY)
        if stats is None:
            msg = (f"'{path}' is a pydata dataset but not a latent cache: its index metadata has no "
                   f"'{METADATA_KEY}' (build one with LatentCache.build)")
            raise FormatError(msg)
        self.stats = LatentStats.from_json(stats, str(Path(path) / INDEX_NAME))

    @property
    def path(self) -> Path:
        """The cache directory."""
        return self.dataset.path

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        s = self.stats
        return (f"LatentCache('{self.path}', samples={s.samples}, {s.field}={s.dtype}{list(s.shape)} "
                f"{s.codec}, fp16 ratio {s.ratio_fp16:.2f}, rel_l2={s.rel_l2:.2e})")

    @classmethod
    def build(cls, encoder: Encoder, dataset: Any, out: str | os.PathLike[str], codec: str = "int8+lz4",
              batch_size: int = 256, *, input_field: str = "image", latent_field: str = "latent",
              keep_fields: Sequence[str] = ("label",), device: str | torch.device | None = None,
              dtype: str = "float16", overwrite: bool = False, progress: bool = True,
              shard_bytes: int = DEFAULT_SHARD_BYTES) -> LatentCache:
        """Runs ``encoder`` over ``dataset`` once and writes a latent cache to ``out``.

        Samples are read in dataset order (no shuffle, every sample once, whatever the
        distributed setup) by a :class:`pydata.Loader`. The encoder runs under
        ``torch.inference_mode`` on float32 batches: a uint8 field is scaled to [0, 1], other
        dtypes are converted as they are. An ``nn.Module`` (or the module of a bound method) is
        put in ``eval()`` mode for the build and restored afterwards. The cache is written into a
        hidden sibling directory and renamed to ``out`` once complete, so ``out`` never holds a
        partial cache, and a failed build leaves an old one in place.

        Args:
            encoder: A torch module or callable mapping a float batch ``[N, ...]`` to latents
                ``[N, *shape]`` (e.g. ``AutoEncoder().encode``).
            dataset: A dataset directory or an open dataset (``MemoryMappedDataset``,
                ``StreamingDataset``: anything with ``index``, ``batch_reader`` and ``epoch_order``).
            out: The cache directory to create.
            codec: The latents' codec, one of ``pydata.CODECS``.
            batch_size: Samples per encoder call.
            input_field: The field fed to the encoder (a fixed-shape tensor).
            latent_field: The name of the latent field in the cache.
            keep_fields: Source fields copied unchanged (labels); ``()`` for none.
            device: Where the encoder runs (default: its parameters' device, else the CPU).
            dtype: The latents' stored dtype: ``float16``, ``float32`` or ``bfloat16``.
            overwrite: Replace a dataset already at ``out``.
            progress: Show a progress bar.
            shard_bytes: Target shard size, as for :class:`pydata.ShardWriter`.

        Returns:
            The open cache.

        Raises:
            FileExistsError: ``out`` holds a dataset and ``overwrite`` is False, or ``out`` holds
                files that are not a dataset (never replaced).
            ValueError: A bad codec, dtype, batch size or field (all named); ``out`` is the
                source; an empty dataset; encoder outputs that are not ``[N, ...]`` of one shape.
            pydata.FormatError: Non-finite latents under a quantising codec (names the samples).
        """
        source = dataset if hasattr(dataset, "batch_reader") else MemoryMappedDataset(dataset)
        out = Path(out)
        _check_arguments(source, codec, dtype, batch_size, input_field, latent_field, keep_fields)
        _check_out(out, overwrite, getattr(source, "path", None))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(out)
        try:
            write_latents(encoder, source, tmp, codec=codec, dtype=dtype, batch_size=batch_size,
                          input_field=input_field, latent_field=latent_field, keep_fields=keep_fields,
                          device=_encoder_device(encoder, device), progress=progress, shard_bytes=shard_bytes)
            _install(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(out)


def _check_arguments(source: Any, codec: str, dtype: str, batch_size: int, input_field: str,
                     latent_field: str, keep_fields: Sequence[str]) -> None:
    """Every problem with the arguments at once, before any work.

    Raises:
        ValueError: Lists them.
    """
    schema = source.index.schema
    problems = []
    if codec not in CODECS:
        problems.append(f"codec {codec!r} is not one of {list(CODECS)}")
    if dtype not in STORED_DTYPES:
        problems.append(f"dtype {dtype!r} is not one of {list(STORED_DTYPES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"batch_size must be a positive int, got {batch_size!r}")
    for name in (input_field, *keep_fields):
        if name not in schema:
            problems.append(f"field {name!r} is not in the dataset (it has {list(schema)})")
    if input_field in schema and (schema[input_field].kind != "tensor" or schema[input_field].shape is None):
        problems.append(f"input field {input_field!r} must be a fixed-shape tensor, "
                        f"not {schema[input_field]!r}")
    if latent_field in keep_fields:
        problems.append(f"latent_field {latent_field!r} is also in keep_fields {list(keep_fields)}")
    if not problems and len(source) == 0:
        problems.append("the dataset has no samples to encode")
    if problems:
        msg = "LatentCache.build: " + "; ".join(problems)
        raise ValueError(msg)


def _check_out(out: Path, overwrite: bool, source_path: Any) -> None:
    """Refuses an ``out`` that is the source, holds a dataset (unless ``overwrite``) or holds
    anything else (always: a directory that is not a dataset is never deleted)."""
    if source_path is not None and out.resolve() == Path(source_path).resolve():
        msg = f"LatentCache.build: out '{out}' is the source dataset"
        raise ValueError(msg)
    if not out.exists():
        return
    is_dataset = (out / INDEX_NAME).is_file()
    if not out.is_dir() or (not is_dataset and any(out.iterdir())):
        msg = f"'{out}' exists and is not a pydata dataset; a latent cache never replaces it"
        raise FileExistsError(msg)
    if is_dataset and not overwrite:
        what = "a dataset"
        with contextlib.suppress(OSError, ValueError):
            stats = read_index(out).metadata.get(METADATA_KEY)
            if isinstance(stats, dict):
                what = (f"a latent cache ({stats.get('samples')} samples, {stats.get('codec')}, "
                        f"from {stats.get('source')})")
        msg = f"'{out}' already holds {what}; pass overwrite=True to replace it"
        raise FileExistsError(msg)


def _encoder_device(encoder: Encoder, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    module = module_of(encoder)
    if module is not None:
        for parameter in module.parameters():
            return parameter.device
    return torch.device("cpu")


def _install(tmp: Path, out: Path) -> None:
    """Renames the finished cache to ``out``; an old one is first moved aside, then deleted, so
    ``out`` is never a mix of the two."""
    old = temp_name(out) if out.exists() else None
    if old is not None:
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_directory(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
