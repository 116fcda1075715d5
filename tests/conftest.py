"""Fixtures shared by the whole suite."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def gc_tester() -> Iterator[Callable[[Any], None]]:
    """Registers objects whose reference cycles must be collectable, and checks at teardown.

    Use it for objects that keep C++ resources alive (mapped files behind numpy views): after
    the test drops them, a full collection must free every registered object.
    """
    import weakref

    refs: list[weakref.ref[Any]] = []

    def register(obj: Any) -> None:
        refs.append(weakref.ref(obj))

    yield register
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"objects still alive after collection: {alive!r}"


# -- datasets ------------------------------------------------------------------------------------


def _bfloat16_bits(values: Any) -> Any:
    """float32 values as bfloat16 bit patterns (uint16), rounded toward zero: numpy has no bfloat16."""
    import numpy as np

    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _column(name: str, field: Any, n: int, seed: int) -> list[Any]:
    """n deterministic values for one field; image- and latent-like tensors come from
    pydata.synthetic, the rest from a seeded generator (sizes vary, empty rows included)."""
    import numpy as np

    from pydata import synthetic

    rng = np.random.default_rng([seed, sum(name.encode())])
    if field.kind == "bytes":
        return [rng.bytes(int(rng.integers(0, 40))) if i % 5 else b"" for i in range(n)]
    if field.kind == "str":
        return [f"sample {i}: " + "é✓x"[: i % 4] * int(rng.integers(0, 6)) for i in range(n)]
    shape = field.shape
    if shape is None:  # varying shape and rank, some empty
        shapes = [tuple(int(d) for d in rng.integers(0, 5, size=i % 3 + 1)) for i in range(n)]
    else:
        shapes = [shape] * n
    if field.dtype == "uint8" and shape is not None and len(shape) == 3 and shape[1] == shape[2]:
        images, _ = synthetic.class_images(n, size=shape[1], channels=shape[0], seed=seed)
        return list(images)
    if field.dtype in ("float16", "float32") and shape is not None and len(shape) == 3 and shape[1] == shape[2]:
        return list(synthetic.smooth_latents(n, shape[0], shape[1], dtype=field.dtype, seed=seed))
    values = []
    for s in shapes:
        if field.dtype == "bfloat16":
            values.append(_bfloat16_bits(rng.standard_normal(s)))
        elif field.dtype == "bool":
            values.append(rng.integers(0, 2, size=s).astype(bool))
        elif np.dtype(field.dtype).kind in "iu":
            info = np.iinfo(field.dtype)
            values.append(rng.integers(max(info.min, -1000), min(info.max, 1000), size=s, dtype=field.dtype,
                                       endpoint=True))
        else:
            values.append((rng.standard_normal(s) * 3).astype(field.dtype))
    return values


def _decoded(field: Any, value: Any) -> Any:
    """What a reader returns for a written value: lossy codecs give their decoded approximation."""
    import numpy as np

    import pydata

    if field.kind != "tensor" or field.codec in ("raw", "lz4", "shuffle+lz4"):
        return value
    dtype = "bfloat16" if field.dtype == "bfloat16" else None
    return pydata.decode(pydata.encode(np.ascontiguousarray(value), field.codec, dtype=dtype))


class SyntheticDataset:
    """A dataset written by the ``make_dataset`` fixture, with the values it holds.

    Attributes:
        path: The dataset directory.
        schema: Field name -> pydata.Field.
        samples: Every sample as written (dicts of numpy arrays, bytes, str).
        expected: Every sample as a reader must return it (lossy codecs already applied;
            bfloat16 as uint16 bits).
    """

    def __init__(self, path: Any, schema: dict[str, Any], samples: list[dict[str, Any]],
                 expected: list[dict[str, Any]]) -> None:
        self.path = path
        self.schema = schema
        self.samples = samples
        self.expected = expected

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: Any, fields: Any = None) -> dict[str, Any]:
        """The reference batch: stacked arrays for fixed-shape tensors, lists otherwise."""
        import numpy as np

        out: dict[str, Any] = {}
        for name in fields if fields is not None else self.schema:
            field = self.schema[name]
            rows = [self.expected[int(i)][name] for i in indices]
            if field.kind == "tensor" and field.shape is not None:
                out[name] = np.array(rows, dtype=field.storage_dtype).reshape(len(rows), *field.shape)
            else:
                out[name] = rows
        return out

    def reader(self, io: str = "mmap", fields: Any = None) -> Any:
        """A pydata.format.BatchReader over the dataset's shards."""
        from pydata.format import BatchReader, ShardReader, read_index

        index = read_index(self.path)
        shards = [ShardReader(self.path / s.file, s, index.schema, io=io) for s in index.shards]
        return BatchReader(shards, index.schema, fields)

    def shard_paths(self) -> list[Any]:
        """The shard files, in index order."""
        from pydata.format import read_index

        return [self.path / s.file for s in read_index(self.path).shards]


def default_schema() -> dict[str, Any]:
    """One field of every kind and layout."""
    from pydata import Field

    return {
        "image": Field("uint8", (3, 8, 8)),
        "label": Field("int64", ()),
        "latent": Field("float16", (4, 4, 4), codec="int8+lz4"),
        "packed": Field("float32", (2, 5), codec="shuffle+lz4"),
        "var": Field("float32", None, codec="lz4"),
        "raw_var": Field("int16", None),
        "bf16": Field("bfloat16", (6,)),
        "blob": Field("bytes"),
        "text": Field("str"),
    }


@pytest.fixture
def make_dataset(tmp_path: Any) -> Callable[..., SyntheticDataset]:
    """A factory of small datasets under ``tmp_path``:
    ``make_dataset(n, fields=schema, shard_bytes=..., name=..., seed=..., batched=False, **writer_kwargs)``.

    ``fields`` defaults to one field of every kind (bytes, str, scalar, fixed raw, compressed
    fixed-shape, variable-shape, bfloat16); ``batched=True`` writes with ``write_batch``.
    """
    import numpy as np

    from pydata import ShardWriter

    def make(n: int = 24, fields: dict[str, Any] | None = None, *, shard_bytes: int = 2048,
             name: str = "ds", seed: int = 0, batched: bool = False, **writer_kwargs: Any) -> SyntheticDataset:
        schema = dict(fields) if fields is not None else default_schema()
        columns = {k: _column(k, f, n, seed) for k, f in schema.items()}
        samples = [{k: columns[k][i] for k in schema} for i in range(n)]
        expected = [{k: _decoded(schema[k], v) for k, v in s.items()} for s in samples]
        path = tmp_path / name
        writer_kwargs.setdefault("progress", False)
        with ShardWriter(path, schema, shard_bytes=shard_bytes, **writer_kwargs) as writer:
            if batched:
                writer.write_batch({k: np.stack(v) if schema[k].layout == "fixed" else v
                                    for k, v in columns.items()})
            else:
                for sample in samples:
                    writer.write(sample)
        return SyntheticDataset(path, schema, samples, expected)

    return make
