"""Converting an image folder (one sub-folder per class) into a labelled dataset.

``DIR/CLASS/.../IMAGE`` becomes a sample with ``label`` = the index of ``CLASS`` among the sorted
class names (the names are kept in the index metadata, under ``classes``). By default every image
is decoded with Pillow, converted to RGB and resized to ``size x size`` with bilinear filtering,
and stored as a uint8 ``(3, size, size)`` tensor: the fixed, zero-copy layout, so training pays
no decode, at the cost of disk (``3 * size**2`` bytes per image) and of a fixed resolution.
With ``keep_encoded`` the original file bytes are stored instead, in a bytes field ``jpeg`` (named
for the common case; it holds whatever format the file had), for pipelines that decode later.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from pydata.convert.parallel import DEFAULT_SHARD_BYTES, write_dataset
from pydata.errors import FormatError
from pydata.format.index import DatasetIndex
from pydata.format.schema import Field
from pydata.format.writer import ShardWriter

__all__ = ["IMAGE_SUFFIXES", "convert_image_folder", "list_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def convert_image_folder(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: int = 64,
    keep_encoded: bool = False,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool | None = None,
) -> DatasetIndex:
    """Converts ``src/CLASS/**/IMAGE`` files into a dataset of ``image``/``jpeg`` and ``label``.

    Args:
        src: The folder of class sub-folders (hidden ones are skipped); images are found
            recursively inside each, by suffix (``IMAGE_SUFFIXES``, any case), in sorted order.
        out: The dataset directory to create.
        size: Height and width of the stored images (ignored with ``keep_encoded``).
        keep_encoded: Store the original file bytes in a bytes field ``jpeg`` (each file is
            still opened once, to reject files Pillow cannot read).
        workers: Processes writing in parallel (see :func:`pydata.convert.parallel.write_dataset`).
        shard_bytes: Target shard size.
        overwrite: Replace a dataset already at ``out``.
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        The new dataset's index; ``index.metadata["classes"]`` lists the class names by label.

    Raises:
        ImportError: Pillow is not installed (``pip install 'pydata[images]'``).
        FileNotFoundError: ``src`` is missing, has no class sub-folders, or they hold no images.
        FormatError: An image Pillow cannot read (the message names the file); ``size`` < 1.
        FileExistsError: ``out`` holds a dataset and not ``overwrite``.
    """
    _pil()  # fail before any work when Pillow is missing
    if size < 1:
        msg = f"size must be >= 1, got {size}"
        raise FormatError(msg)
    classes, jobs = list_images(src)
    schema = ({"jpeg": Field("bytes")} if keep_encoded else {"image": Field("uint8", (3, size, size))})
    schema["label"] = Field("int64", ())
    metadata = {"source": "images", "classes": classes, "size": None if keep_encoded else size}
    write = functools.partial(_write_image, size=size, keep_encoded=keep_encoded)
    return write_dataset(out, schema, jobs, write, total=len(jobs), workers=workers,
                         shard_bytes=shard_bytes, overwrite=overwrite, metadata=metadata,
                         progress=progress)


def list_images(src: str | os.PathLike[str]) -> tuple[list[str], list[tuple[str, int]]]:
    """The sorted class names of ``src`` and its ``(image path, label)`` pairs in sample order.

    Raises:
        FileNotFoundError: ``src`` is missing, has no class sub-folders, or no images.
    """
    root = Path(src)
    if not root.is_dir():
        msg = f"image folder '{root}' does not exist or is not a directory"
        raise FileNotFoundError(msg)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        msg = f"image folder '{root}' has no class sub-folders (expected {root}/CLASS/IMAGE files)"
        raise FileNotFoundError(msg)
    jobs: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        jobs.extend((str(p), label) for p in files)
    if not jobs:
        msg = f"image folder '{root}': its class sub-folders hold no images ({', '.join(IMAGE_SUFFIXES)})"
        raise FileNotFoundError(msg)
    return classes, jobs


def _pil() -> Any:
    """The ``PIL.Image`` module, with an actionable error when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError as exc:
        msg = "converting images needs Pillow: pip install 'pydata[images]'"
        raise ImportError(msg) from exc
    return Image


def _write_image(writer: ShardWriter, job: tuple[str, int], *, size: int, keep_encoded: bool) -> int:
    """Decodes (or checks) one image and writes it with its label (a job of write_dataset)."""
    path, label = job
    image_module = _pil()
    data = Path(path).read_bytes()
    sample: dict[str, Any] = {"label": label}
    try:
        with image_module.open(io.BytesIO(data)) as image:
            if keep_encoded:
                image.verify()
                sample["jpeg"] = data
            else:
                rgb = image.convert("RGB").resize((size, size), image_module.Resampling.BILINEAR)
                sample["image"] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...) for bad files
        msg = f"image '{path}': cannot be decoded: {exc}"
        raise FormatError(msg) from exc
    writer.write(sample)
    return 1
