"""Synthetic data shared by the demo, the tests and the benchmarks.

One generator for all three, so that a benchmark measures the data the tests check. Latents
are low-pass filtered random fields: smooth in space and correlated across channels, like the
output of a VAE encoder, which is what makes them compress well. Everything is seeded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["noise_latents", "smooth_latents"]


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
