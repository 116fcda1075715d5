"""Synthetic data shared by the demo, the tests and the benchmarks.

One generator for all three, so that a benchmark measures the data the tests check. Latents
are low-pass filtered random fields: smooth in space and correlated across channels, like the
output of a VAE encoder, which is what makes them compress well. Images are labelled class
patterns that a small CNN can learn but a pixel-space template cannot fully separate, so a
training demo shows real learning on data made in seconds. Everything is seeded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["class_images", "noise_latents", "smooth_latents"]


def smooth_latents(
    count: int,
    channels: int = 4,
    size: int = 32,
    *,
    dtype: npt.DTypeLike = np.float16,
    cutoff: float = 0.05,
    seed: int = 0,
) -> npt.NDArray[np.generic]:
    """Smooth latent tensors of shape ``(count, channels, size, size)``.

    Each channel is white noise filtered in the frequency domain by a Gaussian low-pass of
    width ``cutoff`` (in cycles per sample; 0.05 gives a correlation length of about three
    samples), then scaled to unit variance (in expectation).

    Args:
        count: Number of latents.
        channels: Channels per latent.
        size: Height and width.
        dtype: Output dtype (float16 by default, as latents are usually stored).
        cutoff: Low-pass width; smaller is smoother.
        seed: Seed of the random generator.

    Returns:
        A C-contiguous array of ``dtype``.

    Example:
        >>> smooth_latents(2, 4, 8).shape
        (2, 4, 8, 8)
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((count, channels, size, size), dtype=np.float32)
    freqs = np.fft.fftfreq(size).astype(np.float32)
    radius2 = freqs[:, None] ** 2 + freqs[None, :] ** 2
    lowpass = np.exp(-radius2 / (2.0 * cutoff**2)).astype(np.float32)
    smooth = np.fft.ifft2(np.fft.fft2(white) * lowpass).real.astype(np.float32)
    # Filtered unit white noise has variance mean(|H|^2): dividing by the filter's gain gives
    # unit variance in expectation, without the blow-up of dividing by a tiny grid's sample std.
    smooth /= np.sqrt(np.mean(lowpass**2))
    return np.ascontiguousarray(smooth.astype(dtype))


def noise_latents(
    count: int,
    channels: int = 4,
    size: int = 32,
    *,
    dtype: npt.DTypeLike = np.float16,
    seed: int = 0,
) -> npt.NDArray[np.generic]:
    """Unfiltered standard-normal tensors of shape ``(count, channels, size, size)``.

    The incompressible counterpart of :func:`smooth_latents`, for worst-case codec figures.
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((count, channels, size, size), dtype=np.float32)
    return np.ascontiguousarray(white.astype(dtype))


# Per-sample variation of class_images, in units of the image side (shift, blob width) or of
# full intensity (tint jitter, grating amplitude).
_SHIFT = 0.12
_BLOB_WIDTH = 0.1
_TINT_JITTER = 0.12
_GRATING = 0.18
_CHUNK = 512


def class_images(
    count: int,
    *,
    classes: int = 10,
    size: int = 32,
    channels: int = 3,
    noise: float = 0.2,
    seed: int = 0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Labelled images of ``classes`` learnable patterns, shape ``(count, channels, size, size)``.

    Class ``k`` has a fixed pattern derived from ``k`` alone (so every seed draws from the same
    classes and a model trained on one seed can be tested on another): a colour tint from a
    hue wheel, a sinusoidal grating at angle ``pi k / classes`` and 2 to 4 cycles per image,
    and a colour blob on a ring around the centre. Each sample gets a random grating phase,
    grating contrast, blob shift (up to 12% of the side), tint jitter and uniform pixel noise
    of standard deviation ``noise``. A nearest-class-mean classifier on raw pixels scores
    roughly 55% with 10 classes (it sees the tints and blobs, not the randomly phased gratings);
    a small CNN does better. 50,000 images of 64x64 take a few seconds on one core.

    Args:
        count: Number of images.
        classes: Number of classes; labels are balanced (counts differ by at most one).
        size: Height and width.
        channels: Channels per image.
        noise: Standard deviation of the pixel noise, in units of full intensity (255).
        seed: Seed of the random generator.

    Returns:
        ``(images, labels)``: C-contiguous uint8 images and int64 labels in ``[0, classes)``,
        in shuffled order.

    Raises:
        ValueError: ``count`` is negative, or ``classes``, ``size`` or ``channels`` is < 1.

    Example:
        >>> images, labels = class_images(4, size=8)
        >>> images.shape, images.dtype, labels.dtype
        ((4, 3, 8, 8), dtype('uint8'), dtype('int64'))
    """
    if count < 0 or min(classes, size, channels) < 1:
        msg = (f"need count >= 0 and classes, size, channels >= 1; "
               f"got {count}, {classes}, {size}, {channels}")
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count, dtype=np.int64) % classes)
    images = np.empty((count, channels, size, size), np.uint8)
    work = np.empty((min(_CHUNK, count), channels, size * size), np.float32)
    basis = np.empty((min(_CHUNK, count), 3, size, size), np.float32)
    for start in range(0, count, _CHUNK):
        chunk = labels[start : start + _CHUNK]
        out = work[: chunk.size]
        _draw_patterns(rng, chunk, classes, channels, size, noise, basis[: chunk.size], out)
        images[start : start + chunk.size] = out.reshape(chunk.size, channels, size, size)
    return images, labels


def _draw_patterns(
    rng: np.random.Generator,
    labels: npt.NDArray[np.int64],
    classes: int,
    channels: int,
    size: int,
    noise: float,
    basis: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:
    """Fills ``out`` (n, channels, size*size) with intensities in [0, 255], offset by +0.5 so
    that the truncating uint8 cast rounds to nearest.

    Every pattern is a sum of three separable (row x column) terms, cos(a)cos(b) - sin(a)sin(b)
    for the grating and gy*gx for the blob, so the per-pixel work is one outer product per term
    and one small matmul that mixes the terms into channels.
    """
    n = labels.size
    k = np.arange(classes)
    hue = 2 * np.pi * k / classes
    tint_k = 0.5 + 0.25 * np.cos(hue[:, None] - 2 * np.pi * np.arange(channels) / 3)
    ring = 2 * np.pi * ((3 * k) % classes) / classes  # blob position, decorrelated from angle
    centre_k = 0.5 + 0.22 * np.stack([np.sin(ring), np.cos(ring)], axis=1)
    wave_k = 2 * np.pi * (2.0 + k % 3)
    angle_k = np.pi * k / classes
    coords = (np.arange(size) + 0.5) / size

    phase = rng.uniform(0, 2 * np.pi, n)
    centre = centre_k[labels] + rng.uniform(-_SHIFT, _SHIFT, (n, 2))
    contrast = rng.uniform(0.5, 1.0, n)
    tint = tint_k[labels] + rng.normal(0, _TINT_JITTER, (n, channels))
    across = (wave_k * np.cos(angle_k))[labels, None] * coords + phase[:, None]
    down = (wave_k * np.sin(angle_k))[labels, None] * coords
    blob_y = np.exp(-((coords - centre[:, :1]) ** 2) / (2 * _BLOB_WIDTH**2))
    blob_x = np.exp(-((coords - centre[:, 1:]) ** 2) / (2 * _BLOB_WIDTH**2))
    rows = np.stack([np.cos(down), -np.sin(down), blob_y], axis=1).astype(np.float32)
    cols = np.stack([np.cos(across), np.sin(across), blob_x], axis=1).astype(np.float32)
    np.multiply(rows[..., None], cols[:, :, None, :], out=basis)

    # Work in units of the noise step, so that int8 noise bytes add without a scaled copy.
    step = noise * np.sqrt(3.0) / 128.0 if noise > 0 else 1.0
    grating = np.broadcast_to((_GRATING * contrast)[:, None], (n, channels))
    mix = np.stack([grating, grating, 0.5 * (tint - 0.5)], axis=2) / step
    np.matmul(mix.astype(np.float32), basis.reshape(n, 3, -1), out=out)
    out += (tint / step).astype(np.float32)[:, :, None]
    if noise > 0:
        out += np.frombuffer(rng.bytes(out.size), np.int8).reshape(out.shape)
    out *= np.float32(step * 255)
    out += np.float32(0.5)  # the uint8 cast truncates: +0.5 rounds to nearest
    np.clip(out, 0, 255, out=out)
