"""pydata.models.ResNet: output shapes for any image size, depth validation, the stage widths,
and that the model trains (one step lowers the loss on a fixed batch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pydata.models import ResNet
from pydata.models.resnet import BasicBlock


@pytest.mark.parametrize(("size", "channels", "classes"), [(32, 3, 10), (8, 1, 2), (13, 4, 100)])
def test_logits_have_one_row_per_image_for_any_size(size: int, channels: int, classes: int) -> None:
    model = ResNet(num_classes=classes, depth=8, width=4, in_channels=channels)
    logits = model(torch.randn(3, channels, size, size))
    assert logits.shape == (3, classes)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("depth", [8, 14, 20, 32])
def test_depth_gives_n_blocks_per_stage(depth: int) -> None:
    model = ResNet(depth=depth, width=4)
    n = (depth - 2) // 6
    assert [len(stage) for stage in (model.stage1, model.stage2, model.stage3)] == [n, n, n]
    convs3x3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3x3) + 1 == depth  # the 3x3 convolutions and the head are the counted layers


@pytest.mark.parametrize("depth", [0, 7, 9, 19, 21, -4])
def test_a_depth_that_is_not_6n_plus_2_is_named(depth: int) -> None:
    with pytest.raises(ValueError, match=rf"depth must be 6 \* n \+ 2 .*got {depth}$"):
        ResNet(depth=depth)


def test_sizes_below_one_are_named() -> None:
    with pytest.raises(ValueError, match="width must be >= 1, got 0"):
        ResNet(width=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        ResNet(num_classes=0)


def test_stages_widen_and_halve_the_resolution() -> None:
    model = ResNet(depth=8, width=5).eval()
    x = torch.randn(2, 3, 32, 32)
    stem = model.stem(x)
    first = model.stage1(stem)
    second = model.stage2(first)
    third = model.stage3(second)
    assert [t.shape[1:] for t in (first, second, third)] == [(5, 32, 32), (10, 16, 16), (20, 8, 8)]
    assert model.head.in_features == 20


def test_resnet20_has_the_usual_size() -> None:
    # ResNet-20 of He et al. has 0.27 M parameters; projection shortcuts add a few thousand.
    parameters = sum(p.numel() for p in ResNet().parameters())
    assert 0.26e6 < parameters < 0.28e6


def test_every_block_starts_as_the_identity_plus_relu() -> None:
    block = ResNet(depth=8, width=4).stage1[0]
    assert isinstance(block, BasicBlock)
    block.eval()
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_one_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = ResNet(num_classes=3, depth=8, width=4)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())
