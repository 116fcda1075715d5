"""A DALI pipeline over a pydata dataset: ``fn.external_source`` and the image ops.

The external source hands DALI the bytes the compiled core gathered (and decoded, for
compressed fields) for the Loader's batches (:mod:`pydata.dali.source`); crop, flip and
normalise then run as one ``fn.crop_mirror_normalize`` on DALI's CPU threads or, after
``.gpu()``, on the GPU. The trade-off against :class:`pydata.Loader`: DALI copies each batch into
its own buffers once more, and in exchange the augmentations run in DALI's operator threads
(or on the GPU) with DALI's scheduling. Only fixed-shape tensor fields can be outputs: DALI's
torch iterator hands out dense batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.pipeline import Pipeline

from pydata.dali.source import Augment, BatchSource, EpochPlan, SampleSource, transport_dtype
from pydata.datasets import order as orders
from pydata.format.schema import Field

__all__ = ["check_device", "create_pipeline", "output_fields"]

Device = Literal["cpu", "gpu"]
Normalize = tuple[float | Sequence[float], float | Sequence[float]]


def output_fields(dataset: Any, fields: Sequence[str] | None = None) -> dict[str, Field]:
    """The fields a pipeline over ``dataset`` outputs (default: the dataset's), checked.

    Raises:
        KeyError: A field the dataset does not have.
        ValueError: A field that is not a fixed-shape tensor (names it and its kind).
    """
    schema: dict[str, Field] = dict(dataset.batch_reader(fields).fields)
    for name, field in schema.items():
        if field.kind != "tensor" or field.shape is None:
            shape = "variable shape" if field.kind == "tensor" else field.kind
            msg = (f"field {name!r} ({shape}) cannot be a DALI output: DALI's torch iterator needs "
                   f"fixed-shape tensor fields; choose them with fields=")
            raise ValueError(msg)
    return schema


def check_device(device: str, device_id: int | None) -> None:
    """Raises ValueError unless ``device`` is ``"cpu"``, or ``"gpu"`` with a ``device_id``."""
    if device not in ("cpu", "gpu") or (device == "gpu" and device_id is None):
        msg = f"device must be 'cpu' or 'gpu' (with a device_id), got {device!r}, device_id={device_id}"
        raise ValueError(msg)


def create_pipeline(dataset: Any, batch_size: int, *, fields: Sequence[str] | None = None,
                    shard_id: int | None = None, num_shards: int | None = None, seed: int = 0,
                    shuffle: bool = True, drop_last: bool = False, epoch: int = 0, start: int = 0,
                    image: str = "image", normalize: Normalize | None = None,
                    crop: int | tuple[int, int] | None = None, flip: float = 0.0,
                    device: Device = "cpu", device_id: int | None = None,
                    num_threads: int | None = None, prefetch: int = 2,
                    parallel: bool = False, py_num_workers: int = 1,
                    py_start_method: Literal["fork", "spawn"] = "fork") -> Pipeline:
    """A DALI pipeline whose outputs are ``fields``, in order, batch by batch as the Loader's.

    Args:
        dataset: A :class:`pydata.MemoryMappedDataset` or :class:`pydata.StreamingDataset`.
        batch_size: Samples per batch (the last batch of an epoch may be short, see
            :class:`pydata.dali.source.SampleSource` for ``parallel=True``).
        fields: Output fields, fixed-shape tensors only (default: the dataset's).
        shard_id, num_shards: This pipeline's share, as the Loader's ``rank, world_size``
            (default: torch.distributed, else RANK/WORLD_SIZE, else 0 of 1).
        seed, shuffle, drop_last: As for :class:`pydata.Loader`.
        epoch, start: The first epoch, and samples of it already consumed globally (a resume).
        image: The ``(C, H, W)`` field that ``normalize``, ``crop`` and ``flip`` apply to.
        normalize: ``(mean, std)`` per channel (or one value each): ``(x / 255 - mean) / std``
            for integer images, ``(x - mean) / std`` for floating ones; output float32.
        crop: Random crop size (one int or ``(height, width)``), per sample.
        flip: Probability of mirroring a sample left-right.
        device: ``"cpu"``, or ``"gpu"`` (every output is moved to the GPU and the ops run there).
        device_id: The CUDA device; None for a CPU-only pipeline (required for ``"gpu"``).
        num_threads: DALI's CPU operator threads (default: the usable cores).
        prefetch: Batches DALI prepares ahead.
        parallel: Read per sample in ``py_num_workers`` DALI worker processes.
        py_num_workers, py_start_method: DALI's worker processes for ``parallel=True``.

    Returns:
        An unbuilt ``nvidia.dali.Pipeline`` (DALI's iterators build it).

    Raises:
        ValueError: Bad arguments, a non-tensor field, or ops on a field that is not ``(C, H, W)``.
    """
    check_device(device, device_id)
    schema = output_fields(dataset, fields)
    rank, world = orders.resolve_rank_world(shard_id, num_shards)
    plan = EpochPlan(dataset, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last,
                     shard_id=rank, num_shards=world, epoch=epoch, start=start)
    ops = normalize is not None or crop is not None or flip > 0.0
    augment = _augment(schema, image, crop, flip) if ops else None
    source = (SampleSource if parallel else BatchSource)(plan, list(schema), augment)
    pipe = Pipeline(batch_size=batch_size, num_threads=num_threads or len(os.sched_getaffinity(0)),
                    device_id=device_id, seed=seed, prefetch_queue_depth=prefetch,
                    py_num_workers=py_num_workers, py_start_method=py_start_method)
    with pipe:
        mode: dict[str, Any] = {"batch": True, "batch_info": True}
        if parallel:
            mode = {"parallel": True, "batch": False, "prefetch_queue_depth": prefetch}
        nodes = fn.external_source(source=source, num_outputs=source.num_outputs, **mode,
                                   **_signature(schema, image, source))
        outputs = list(nodes[: len(schema)])
        if device == "gpu":
            outputs = [node.gpu() for node in outputs]
        if ops:
            position = list(schema).index(image)
            args = _op_arguments(schema[image], normalize, source.augment, nodes[len(schema):])
            outputs[position] = fn.crop_mirror_normalize(outputs[position], **args)
        pipe.set_outputs(*outputs)
    return pipe


def _augment(schema: dict[str, Field], image: str, crop: int | tuple[int, int] | None,
             flip: float) -> Augment:
    if image not in schema or schema[image].shape is None or len(schema[image].shape or ()) != 3:
        got = schema[image].shape if image in schema else "not an output field"
        msg = f"normalize/crop/flip apply to image field {image!r}, which must be (C, H, W); got {got}"
        raise ValueError(msg)
    storage = np.dtype(schema[image].storage_dtype)
    if transport_dtype(storage) != storage:
        msg = (f"image field {image!r} is {schema[image].dtype}: DALI's crop/flip/normalise take "
               "uint8, int8, int16 or floats")
        raise ValueError(msg)
    _, height, width = schema[image].shape or ()
    size = (crop, crop) if isinstance(crop, int) else crop
    return Augment(height, width, None if size is None else (int(size[0]), int(size[1])), float(flip))


def _signature(schema: dict[str, Field], image: str,
               source: BatchSource | SampleSource) -> dict[str, Any]:
    """``dtype``, ``ndim`` and ``layout`` of every external_source output."""
    dtypes = [types.to_dali_type(transport_dtype(f.storage_dtype).name) for f in schema.values()]
    ndims = [len(f.shape or ()) for f in schema.values()]
    layouts = ["CHW" if name == image and len(f.shape or ()) == 3 else "" for name, f in schema.items()]
    if source.augment is not None:  # crop_pos_y, crop_pos_x, mirror: one scalar per sample
        dtypes += [types.FLOAT, types.FLOAT, types.INT32]
        ndims += [0, 0, 0]
        layouts += ["", "", ""]
    return {"dtype": dtypes, "ndim": ndims, "layout": layouts}


def _op_arguments(field: Field, normalize: Normalize | None,
                  augment: Augment | None, inputs: Sequence[Any]) -> dict[str, Any]:
    """Arguments of ``fn.crop_mirror_normalize`` for the image ``field``."""
    storage = np.dtype(field.storage_dtype)
    args: dict[str, Any] = {"output_layout": "CHW", "dtype": types.to_dali_type(storage.name)}
    if normalize is not None:
        mean, std = (np.atleast_1d(np.asarray(part, np.float64)).tolist() for part in normalize)
        if 0.0 in std or {len(mean), len(std)} - {1, (field.shape or (0,))[0]}:
            msg = f"normalize needs one mean and std per channel (or one each), no zero std; got {normalize}"
            raise ValueError(msg)
        scale = 1.0 if storage.kind == "f" else 255.0  # integer images are scaled to [0, 1] first
        args |= {"mean": [m * scale for m in mean], "std": [s * scale for s in std],
                 "dtype": types.FLOAT}
    if augment is not None:
        pos_y, pos_x, mirror = inputs
        if augment.crop is not None:
            args |= {"crop": augment.crop, "crop_pos_y": pos_y, "crop_pos_x": pos_x}
        args["mirror"] = mirror
    return args
