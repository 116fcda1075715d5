"""A small convolutional autoencoder whose encoder produces latents for the latent cache.

The encoder halves the resolution twice (``[N, C, H, W]`` to ``[N, latent_channels, H/4,
W/4]``), the decoder mirrors it. The trade-off: a 4x downsampling with a few latent channels
(4 by default, 48x fewer values than RGB) keeps the model small enough to encode a dataset on a
CPU, at the price of blurry reconstructions; the latents are meant as a compact training input,
not as a generative model. The latents are unbounded floats (no activation), so they can be
stored as float16 or quantised with the int8/fp8 codecs.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AutoEncoder"]


class AutoEncoder(nn.Module):
    """Encoder ``[N, C, H, W] -> [N, latent_channels, H/4, W/4]`` and a mirrored decoder.

    ``H`` and ``W`` must be divisible by 4. Children: ``encoder`` and ``decoder`` (the
    top-level modules that ``pydata profile`` reports). The decoder ends with a sigmoid, so
    reconstructions lie in ``[0, 1]``: train on images scaled to that range.

    Args:
        in_channels: Channels of the images.
        latent_channels: Channels of the latents.
        width: Channels after the first downsampling; the second has ``2 * width``.

    Raises:
        ValueError: A size is below 1.
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 32) -> None:
        super().__init__()
        sizes = {"in_channels": in_channels, "latent_channels": latent_channels, "width": width}
        for name, value in sizes.items():
            if value < 1:
                msg = f"AutoEncoder {name} must be >= 1, got {value}"
                raise ValueError(msg)
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: Tensor) -> Tensor:
        """Returns the latents ``[N, latent_channels, H/4, W/4]`` of images ``x`` ``[N, C, H, W]``.

        Raises:
            ValueError: ``x`` is not 4-D with ``in_channels`` channels and ``H``, ``W``
                divisible by 4.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2] % 4 or x.shape[3] % 4:
            msg = (f"AutoEncoder.encode expects [N, {self.in_channels}, H, W] with H and W "
                   f"divisible by 4, got shape {tuple(x.shape)}")
            raise ValueError(msg)
        out: Tensor = self.encoder(x)
        return out

    def decode(self, z: Tensor) -> Tensor:
        """Returns images ``[N, C, 4 * h, 4 * w]`` in ``[0, 1]`` from latents ``z``
        ``[N, latent_channels, h, w]``.

        Raises:
            ValueError: ``z`` is not 4-D with ``latent_channels`` channels.
        """
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            msg = (f"AutoEncoder.decode expects [N, {self.latent_channels}, h, w], "
                   f"got shape {tuple(z.shape)}")
            raise ValueError(msg)
        out: Tensor = self.decoder(z)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Returns the reconstruction ``[N, C, H, W]`` of ``x`` (``decode(encode(x))``)."""
        return self.decode(self.encode(x))
