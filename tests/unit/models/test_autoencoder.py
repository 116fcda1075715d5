"""pydata.models.AutoEncoder: latent and reconstruction shapes, the divisible-by-4 rule, shape
errors, the output range, and that training lowers the reconstruction error."""

from __future__ import annotations

import pytest
import torch

from pydata.models import AutoEncoder


@pytest.mark.parametrize(("channels", "latents", "height", "width"),
                         [(3, 4, 32, 32), (1, 2, 8, 20)])
def test_latents_are_a_quarter_of_the_resolution(channels: int, latents: int, height: int,
                                                 width: int) -> None:
    model = AutoEncoder(in_channels=channels, latent_channels=latents, width=8)
    x = torch.rand(2, channels, height, width)
    z = model.encode(x)
    assert z.shape == (2, latents, height // 4, width // 4)
    assert model.decode(z).shape == x.shape
    reconstruction = model(x)
    assert reconstruction.shape == x.shape
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1
    torch.testing.assert_close(reconstruction, model.decode(model.encode(x)))


@pytest.mark.parametrize("shape", [(2, 3, 30, 32), (2, 3, 32, 6), (2, 1, 32, 32), (3, 32, 32)])
def test_encode_names_a_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"expects \[N, 3, H, W\] with H and W divisible by 4, "
                       rf"got shape \({', '.join(map(str, shape))}\)"):
        AutoEncoder().encode(torch.rand(shape))


def test_decode_names_a_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"expects \[N, 4, h, w\], got shape \(2, 3, 8, 8\)"):
        AutoEncoder().decode(torch.rand(2, 3, 8, 8))


def test_sizes_below_one_are_named() -> None:
    with pytest.raises(ValueError, match="latent_channels must be >= 1, got 0"):
        AutoEncoder(latent_channels=0)


def test_the_encoder_is_small_enough_for_a_cpu() -> None:
    model = AutoEncoder()
    assert sum(p.numel() for p in model.parameters()) < 100_000


def test_training_lowers_the_reconstruction_error() -> None:
    torch.manual_seed(0)
    model = AutoEncoder(width=8)
    # Smooth images (a 4x4 grid upsampled): structure that a 4x downsampling can keep.
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4), size=16, mode="bilinear")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(x), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
