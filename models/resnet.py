"""A ResNet for small images (He et al. 2016, the CIFAR variant), depth and width configurable.

Three stages of basic residual blocks at widths ``width``, ``2 * width`` and ``4 * width``, the
later two starting with a stride-2 block, then global average pooling and a linear head. The
trade-off is the CIFAR one: a 3x3 stem without max-pooling keeps full resolution in the first
stage, which is right for 32x32 inputs and costs compute on large ones (use a small ``width``
there). Shortcuts that change shape are 1x1 stride-2 convolutions with batch norm ("option B"),
which adds a few parameters but needs no zero-padding tricks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection.

    Maps ``[N, in_channels, H, W]`` to ``[N, out_channels, ceil(H / stride), ceil(W / stride)]``.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: Stride of the first convolution (1 or 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Applies the block to ``x`` ``[N, in_channels, H, W]``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet: ``depth = 6 * n + 2`` layers, ``n`` basic blocks per stage.

    ``ResNet(depth=20)`` is ResNet-20 (0.27 M parameters at ``width=16``), ``depth=56`` is
    ResNet-56. Children, in order: ``stem``, ``stage1``, ``stage2``, ``stage3``, ``pool``,
    ``head`` (the top-level modules that ``pydata profile`` reports).

    Args:
        num_classes: Size of the output (logits).
        depth: Total weighted layers, ``6 * n + 2`` with ``n >= 1`` (8, 14, 20, 32, 44, 56, ...).
        width: Channels of the first stage; the others have ``2 * width`` and ``4 * width``.
        in_channels: Channels of the input images.

    Raises:
        ValueError: ``depth`` is not ``6 * n + 2``, or a size is below 1.
    """

    def __init__(
        self, num_classes: int = 10, depth: int = 20, width: int = 16, in_channels: int = 3
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            msg = f"ResNet depth must be 6 * n + 2 with n >= 1 (8, 14, 20, 56, ...), got {depth}"
            raise ValueError(msg)
        sizes = {"num_classes": num_classes, "width": width, "in_channels": in_channels}
        for name, value in sizes.items():
            if value < 1:
                msg = f"ResNet {name} must be >= 1, got {value}"
                raise ValueError(msg)
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.stage1 = _stage(width, width, blocks, stride=1)
        self.stage2 = _stage(width, 2 * width, blocks, stride=2)
        self.stage3 = _stage(2 * width, 4 * width, blocks, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the logits ``[N, num_classes]`` of images ``x`` ``[N, in_channels, H, W]``
        (float, any ``H, W >= 8``)."""
        features = self.stage3(self.stage2(self.stage1(self.stem(x))))
        logits: Tensor = self.head(torch.flatten(self.pool(features), 1))
        return logits


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions; the last batch norm of each block starts at zero, so
    every block begins as the identity (Goyal et al. 2017), which stabilises deep variants."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
