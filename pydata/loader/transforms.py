"""Batch transforms: normalise, random crop, flip and multi-scale resize of an assembled batch.

A transform takes the whole batch (a dict of tensors) and runs on its device, CPU or CUDA, with
tensor operations only: no loop over samples, no host sync. Its randomness comes only from the
CPU ``torch.Generator`` passed to each call, which the Loader seeds from ``(seed, epoch, batch
number)`` (:func:`batch_generator`); the few random numbers are drawn on the CPU and copied to
the device, so a run draws the same crops and flips on any device. The trade-off: transforms
work per batch, so images share one layout ``(N, C, H, W)`` and size, and a multi-scale resize
picks one size per batch, not per sample. A transform never writes to its input (it may be a
reused loader buffer): it returns a new dict with a new tensor for the field it transforms.

Example:
    >>> import torch
    >>> images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    >>> augment = Compose([RandomCrop("image", 6, padding=1), RandomHorizontalFlip("image"),
    ...                    Normalize("image", [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])
    >>> out = augment({"image": images, "label": torch.arange(4)}, batch_generator(0, 0, 0))
    >>> out["image"].shape, out["image"].dtype
    (torch.Size([4, 3, 6, 6]), torch.float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BatchTransform",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResize",
    "apply_transforms",
    "batch_generator",
]

Batch = Mapping[str, Any]
ResizeMode = Literal["nearest", "nearest-exact", "bilinear", "bicubic", "area"]


class BatchTransform(Protocol):
    """What a batch transform is: a callable on ``(batch, generator)``, returning a new dict."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]: ...


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, batch)``: the randomness of one batch.

    The three numbers go through numpy's ``SeedSequence``, so nearby batches get unrelated
    streams, and the same batch gets the same stream on a resume.

    Example:
        >>> a, b = batch_generator(1, 2, 3), batch_generator(1, 2, 3)
        >>> bool(torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b)))
        True
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("batch", batch)):
        if value < 0:
            msg = f"{name} must be >= 0, got {value}"
            raise ValueError(msg)
    state = np.random.SeedSequence((seed, epoch, batch)).generate_state(1, np.uint64)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(state[0]) >> 1)  # 63 bits: within every torch version's range
    return generator


def _image(batch: Batch, field: str) -> torch.Tensor:
    """``batch[field]``, checked to be an ``(N, C, H, W)`` tensor."""
    if field not in batch:
        msg = f"batch has no field {field!r}; its fields are {sorted(batch)}"
        raise KeyError(msg)
    value = batch[field]
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value)
        msg = f"field {field!r} must be a tensor of layout (N, C, H, W), got {got}"
        raise ValueError(msg)
    return value


def _check_generator(generator: torch.Generator) -> None:
    if generator.device.type != "cpu":
        msg = f"transforms draw on a CPU generator, got one on {generator.device}"
        raise ValueError(msg)


def _replace(batch: Batch, field: str, value: torch.Tensor) -> dict[str, Any]:
    out = dict(batch)
    out[field] = value
    return out


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair of ints, each >= 1."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        msg = f"{name} must be a positive int or (height, width), got {value!r}"
        raise ValueError(msg)
    return pair[0], pair[1]


class Normalize:
    """Per-channel ``(x - mean) / std``, after scaling integer images to ``[0, 1]``.

    Integer input (``uint8`` images) becomes ``(x / 255 - mean) / std``; floating input
    becomes ``(x - mean) / std``. The output has dtype ``dtype``.

    Args:
        field: The image field, ``(N, C, H, W)``.
        mean: One value per channel, or one for all.
        std: One value per channel, or one for all; none may be zero.
        dtype: A floating output dtype.

    Raises:
        ValueError: A zero ``std``, a non-floating ``dtype``, or (on call) a channel count
            that ``mean`` and ``std`` do not match.
    """

    def __init__(
        self,
        field: str,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.field = field
        self.mean = [float(mean)] if isinstance(mean, (int, float)) else [float(m) for m in mean]
        self.std = [float(std)] if isinstance(std, (int, float)) else [float(s) for s in std]
        if not self.mean or not self.std or 0.0 in self.std:
            msg = f"Normalize({field!r}): mean and std need values, std no zeros: {mean}, {std}"
            raise ValueError(msg)
        if not dtype.is_floating_point:
            msg = f"Normalize({field!r}): dtype must be floating, got {dtype}"
            raise ValueError(msg)
        self.dtype = dtype
        self._constants: dict[tuple[torch.device, float], tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device, unit: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``1 / (unit * std)`` and ``mean / std`` as ``(1, C, 1, 1)`` tensors on ``device``,
        made once: ``(x / unit - mean) / std == x * scale - shift``."""
        key = (device, unit)
        if key not in self._constants:
            mean, std = (torch.tensor(v, dtype=torch.float64) for v in (self.mean, self.std))
            scale, shift = (v.to(self.dtype).view(1, -1, 1, 1).to(device)
                            for v in (1.0 / (unit * std), mean / std))
            self._constants[key] = (scale, shift)
        return self._constants[key]

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]:
        _check_generator(generator)
        x = _image(batch, self.field)
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, x.shape[1]):
                msg = f"field {self.field!r} has {x.shape[1]} channels, {name} has {len(values)}"
                raise ValueError(msg)
        scale, shift = self._on(x.device, 255.0 if not x.dtype.is_floating_point else 1.0)
        y = x.to(self.dtype, copy=True)  # our own tensor: the in-place steps below are safe
        return _replace(batch, self.field, y.mul_(scale).sub_(shift))  # two passes, no division


def _crop_axis(
    offsets: torch.Tensor, x: torch.Tensor, axis: int, length: int, padding: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The indices of each sample's crop along ``x``'s ``axis`` (``offsets`` are in the padded
    image).

    Returns ``(index, inside)``: ``(n, length)`` indices into the unpadded axis, and for
    constant padding the mask of positions inside the image (``None`` for reflect).
    """
    extent, device = x.shape[axis], x.device
    pos = offsets.to(device, non_blocking=True)[:, None] + torch.arange(length, device=device)
    pos -= padding
    if mode == "reflect":  # one reflection suffices: RandomCrop checks padding < extent
        return (extent - 1) - ((extent - 1) - pos.abs()).abs(), None
    return pos.clamp(0, extent - 1), (pos >= 0) & (pos < extent)


class RandomCrop:
    """A random ``size`` window of each image, after padding, with its own offset per sample.

    On a GPU the crop is one gather: the padding is virtual (index arithmetic), so no padded
    copy of the batch is made, for any dtype. On the CPU, where a broadcast gather is several
    times slower than copying slices, the batch is padded once and each sample's window is
    copied as a slice; both give the same result for the same generator.

    Args:
        field: The image field, ``(N, C, H, W)``.
        size: Output ``(height, width)``, or one int for both.
        padding: Pixels added on every side before cropping.
        padding_mode: ``"constant"`` (zeros) or ``"reflect"`` (mirror, edge not repeated;
            needs ``padding`` smaller than the image).

    Raises:
        ValueError: Bad arguments, or (on call) an image smaller than the crop or than the
            reflect padding.
    """

    def __init__(
        self,
        field: str,
        size: int | tuple[int, int],
        padding: int = 0,
        padding_mode: Literal["constant", "reflect"] = "constant",
    ) -> None:
        if padding < 0 or padding_mode not in ("constant", "reflect"):
            msg = f"RandomCrop({field!r}): bad padding {padding} or mode {padding_mode!r}"
            raise ValueError(msg)
        self.field, self.size = field, _pair("size", size)
        self.padding, self.padding_mode = padding, padding_mode
        self.gather_on_cpu = False  # the GPU's method on the CPU too (tests compare the two)

    def _slices(self, x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
        """The CPU method: pad once, then copy one window per sample."""
        (h, w), pad = self.size, self.padding
        if pad:
            height, width = x.shape[2], x.shape[3]
            rows = torch.arange(-pad, height + pad)
            cols = torch.arange(-pad, width + pad)
            if self.padding_mode == "reflect":
                rows, cols = rows.abs(), cols.abs()
                rows = (height - 1) - ((height - 1) - rows).abs()
                cols = (width - 1) - ((width - 1) - cols).abs()
                x = x.index_select(2, rows).index_select(3, cols)
            else:
                x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        return torch.stack([x[i, :, t:t + h, left:left + w]
                            for i, (t, left) in enumerate(zip(tops.tolist(), lefts.tolist()))])

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]:
        _check_generator(generator)
        x = _image(batch, self.field)
        n, channels, height, width = x.shape
        (h, w), pad = self.size, self.padding
        if h > height + 2 * pad or w > width + 2 * pad:
            msg = f"field {self.field!r}: crop {h}x{w} exceeds {height}x{width} padded by {pad}"
            raise ValueError(msg)
        if self.padding_mode == "reflect" and pad >= min(height, width):
            msg = f"field {self.field!r}: reflect padding {pad} needs images above {pad}x{pad}"
            raise ValueError(msg)
        tops = torch.randint(height + 2 * pad - h + 1, (n,), generator=generator)
        lefts = torch.randint(width + 2 * pad - w + 1, (n,), generator=generator)
        if x.device.type == "cpu" and not self.gather_on_cpu:
            return _replace(batch, self.field, self._slices(x, tops, lefts))
        rows, row_ok = _crop_axis(tops, x, 2, h, pad, self.padding_mode)
        cols, col_ok = _crop_axis(lefts, x, 3, w, pad, self.padding_mode)
        device = x.device
        samples = torch.arange(n, device=device).view(n, 1, 1, 1)
        planes = torch.arange(channels, device=device).view(1, channels, 1, 1)
        out = x[samples, planes, rows[:, None, :, None], cols[:, None, None, :]]
        if row_ok is not None and col_ok is not None and pad > 0:
            out.masked_fill_(~(row_ok[:, None, :, None] & col_ok[:, None, None, :]), 0)
        return _replace(batch, self.field, out)


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, decided per sample.

    Args:
        field: The image field, ``(N, C, H, W)``.
        p: Probability of flipping a sample, in ``[0, 1]``.
    """

    def __init__(self, field: str, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            msg = f"RandomHorizontalFlip({field!r}): p must be in [0, 1], got {p}"
            raise ValueError(msg)
        self.field, self.p = field, p

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]:
        _check_generator(generator)
        x = _image(batch, self.field)
        n, width = x.shape[0], x.shape[3]
        flip = (torch.rand(n, generator=generator) < self.p).to(x.device, non_blocking=True)
        cols = torch.arange(width, device=x.device).expand(n, width)
        cols = torch.where(flip[:, None], width - 1 - cols, cols)
        return _replace(batch, self.field, x.gather(3, cols[:, None, None, :].expand_as(x)))


class RandomResize:
    """Resize the whole batch to one size drawn from ``sizes``: multi-scale training.

    Store one resolution, and let each batch pick its scale. Integer images are resized in
    float32 and rounded back to their dtype; put this after :class:`Normalize` to resize
    floats directly. If the drawn size is the batch's size, the field is passed through.

    Args:
        field: The image field, ``(N, C, H, W)``.
        sizes: Candidate ``(height, width)`` pairs, or ints for square sizes.
        mode: ``torch.nn.functional.interpolate`` mode.
        antialias: Low-pass before downsampling (``"bilinear"`` and ``"bicubic"`` only).
    """

    def __init__(
        self,
        field: str,
        sizes: Sequence[int | tuple[int, int]],
        *,
        mode: ResizeMode = "bilinear",
        antialias: bool = False,
    ) -> None:
        if not sizes or mode not in get_args(ResizeMode):
            msg = f"RandomResize({field!r}): need sizes and a known mode, got {sizes}, {mode!r}"
            raise ValueError(msg)
        if antialias and mode not in ("bilinear", "bicubic"):
            msg = f"RandomResize({field!r}): antialias needs bilinear or bicubic, not {mode!r}"
            raise ValueError(msg)
        self.field, self.mode, self.antialias = field, mode, antialias
        self.sizes = [_pair(f"sizes[{i}]", s) for i, s in enumerate(sizes)]

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]:
        _check_generator(generator)
        x = _image(batch, self.field)
        size = self.sizes[int(torch.randint(len(self.sizes), (1,), generator=generator))]
        if size == tuple(x.shape[2:]):
            return _replace(batch, self.field, x)
        linear = self.mode in ("bilinear", "bicubic")
        y = F.interpolate(
            x if x.is_floating_point() else x.float(),
            size=size,
            mode=self.mode,
            align_corners=False if linear else None,
            antialias=self.antialias,
        )
        if not x.is_floating_point():
            info = torch.iinfo(x.dtype)
            y = y.round_().clamp_(info.min, info.max).to(x.dtype)
        return _replace(batch, self.field, y)


class Compose:
    """Transforms applied in order, all drawing from the same generator.

    Args:
        transforms: The transforms, first applied first.
    """

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = tuple(transforms)

    def __call__(self, batch: Batch, generator: torch.Generator) -> dict[str, Any]:
        return apply_transforms(batch, self.transforms, generator)


def apply_transforms(
    batch: Batch, transforms: Sequence[BatchTransform], generator: torch.Generator
) -> dict[str, Any]:
    """``batch`` passed through ``transforms`` in order; a new dict even if there are none.

    Example:
        >>> apply_transforms({"x": 1}, [], torch.Generator())
        {'x': 1}
    """
    out = dict(batch)
    for transform in transforms:
        out = transform(out, generator)
    return out
