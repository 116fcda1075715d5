"""Batch transforms: exact results against per-sample references, determinism, no mutation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from pydata.loader.transforms import (
    BatchTransform,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResize,
    apply_transforms,
    batch_generator,
)

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(
    n: int = 16,
    channels: int = 3,
    height: int = 10,
    width: int = 12,
    *,
    dtype: torch.dtype = torch.uint8,
    device: str = "cpu",
) -> torch.Tensor:
    x = torch.randint(0, 256, (n, channels, height, width), generator=seeded(1234))
    return x.to(dtype).to(device)


def run_unchanged(transform: BatchTransform, batch: dict[str, Any], seed: int) -> dict[str, Any]:
    """Applies ``transform`` and checks that the input batch and its tensors are untouched."""
    before = {k: v.clone() for k, v in batch.items()}
    keys = list(batch)
    out = transform(batch, seeded(seed))
    assert out is not batch
    assert list(batch) == keys
    for key, value in batch.items():
        assert torch.equal(value, before[key]), f"{key} was modified in place"
    return out


# --- Normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_scales_integer_images(device: str) -> None:
    x = images(device=device)
    labels = torch.arange(len(x), device=device)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = run_unchanged(Normalize("image", mean, std), {"image": x, "label": labels}, 0)
    expected = (
        x.float() / 255 - torch.tensor(mean, device=device).view(1, 3, 1, 1)
    ) / torch.tensor(std, device=device).view(1, 3, 1, 1)
    assert out["image"].dtype == torch.float32
    assert out["image"].device == x.device
    torch.testing.assert_close(out["image"], expected)
    assert out["label"] is labels


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_float_images_without_rescaling(device: str) -> None:
    x = images(dtype=torch.float32, device=device) / 7
    out = run_unchanged(Normalize("image", 0.5, 2.0, dtype=torch.float64), {"image": x}, 0)
    assert out["image"].dtype == torch.float64
    torch.testing.assert_close(out["image"], (x.double() - 0.5) / 2.0)


def test_normalize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="std no zeros"):
        Normalize("image", [0.5], [0.0])
    with pytest.raises(ValueError, match="dtype must be floating"):
        Normalize("image", 0.5, 0.5, dtype=torch.int32)
    with pytest.raises(ValueError, match="'image' has 3 channels, mean has 2"):
        Normalize("image", [0.5, 0.5], 1.0)({"image": images()}, seeded(0))


# --- RandomCrop ----------------------------------------------------------------------------


def offsets(seed: int, n: int, room: tuple[int, int]) -> tuple[list[int], list[int]]:
    """The offsets a crop draws: rows for all samples, then columns, from ``seed``."""
    generator = seeded(seed)
    top = torch.randint(room[0], (n,), generator=generator)
    left = torch.randint(room[1], (n,), generator=generator)
    return top.tolist(), left.tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize(("padding", "mode"), [(0, "constant"), (3, "constant"), (4, "reflect")])
@pytest.mark.parametrize("gather_on_cpu", [False, True], ids=["cpu slices", "gather"])
def test_crop_equals_the_window_at_the_drawn_offsets(
    device: str, dtype: torch.dtype, padding: int, mode: Any, gather_on_cpu: bool
) -> None:
    x = images(dtype=dtype, device=device)
    size = (7, 9)
    crop = RandomCrop("image", size, padding, mode)
    crop.gather_on_cpu = gather_on_cpu
    out = run_unchanged(crop, {"image": x}, 42)["image"]
    assert out.shape == (len(x), 3, *size)
    assert out.dtype == dtype
    assert out.device == x.device
    padded = F.pad(x.double(), (padding,) * 4, mode=mode).to(dtype)
    room = (padded.shape[2] - size[0] + 1, padded.shape[3] - size[1] + 1)
    tops, lefts = offsets(42, len(x), room)
    assert len(set(zip(tops, lefts, strict=True))) > 1  # the offsets are per sample
    for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
        assert torch.equal(out[i], padded[i, :, top : top + size[0], left : left + size[1]])


def test_crop_is_deterministic_per_generator_seed() -> None:
    batch = {"image": images()}
    crop = RandomCrop("image", 6, padding=2)
    assert torch.equal(crop(batch, seeded(5))["image"], crop(batch, seeded(5))["image"])
    assert not torch.equal(crop(batch, seeded(5))["image"], crop(batch, seeded(6))["image"])


def test_crop_rejects_bad_arguments() -> None:
    batch = {"image": images(height=10, width=12)}
    with pytest.raises(ValueError, match="crop 11x4 exceeds 10x12 padded by 0"):
        RandomCrop("image", (11, 4))(batch, seeded(0))
    with pytest.raises(ValueError, match="reflect padding 10"):
        RandomCrop("image", 4, 10, "reflect")(batch, seeded(0))
    with pytest.raises(ValueError, match="size must be a positive int"):
        RandomCrop("image", 0)
    with pytest.raises(ValueError, match="bad padding"):
        RandomCrop("image", 4, 1, "edge")  # type: ignore[arg-type]


# --- RandomHorizontalFlip ------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_flip_mirrors_the_drawn_samples(device: str) -> None:
    x = images(n=64, device=device)
    out = run_unchanged(RandomHorizontalFlip("image"), {"image": x}, 9)["image"]
    flipped = (torch.rand(64, generator=seeded(9)) < 0.5).tolist()
    assert 0 < sum(flipped) < 64  # both outcomes occur
    for i, flip in enumerate(flipped):
        assert torch.equal(out[i], x[i].flip(-1) if flip else x[i])


def test_flip_probability_bounds() -> None:
    x = images()
    assert torch.equal(RandomHorizontalFlip("image", 0.0)({"image": x}, seeded(0))["image"], x)
    flipped = RandomHorizontalFlip("image", 1.0)({"image": x}, seeded(0))["image"]
    assert torch.equal(flipped, x.flip(-1))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        RandomHorizontalFlip("image", 1.5)


# --- RandomResize --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_resize_draws_one_size_per_batch(device: str, dtype: torch.dtype) -> None:
    x = images(dtype=dtype, device=device)
    resize = RandomResize("image", [(8, 8), (12, 16), 20])
    shapes = set()
    for seed in range(30):
        out = run_unchanged(resize, {"image": x}, seed)["image"]
        again = resize({"image": x}, seeded(seed))["image"]
        assert torch.equal(out, again)
        assert out.dtype == dtype
        assert out.device == x.device
        shapes.add(tuple(out.shape[2:]))
    assert shapes == {(8, 8), (12, 16), (20, 20)}


def test_resize_matches_interpolate() -> None:
    x = images(dtype=torch.float32)
    out = RandomResize("image", [(5, 6)], mode="bicubic", antialias=True)({"image": x}, seeded(0))
    expected = F.interpolate(x, size=(5, 6), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(out["image"], expected)
    same = RandomResize("image", [(10, 12)])({"image": x}, seeded(0))
    assert same["image"] is x  # the drawn size is the stored one: passed through


def test_resize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="need sizes"):
        RandomResize("image", [])
    with pytest.raises(ValueError, match="antialias needs bilinear or bicubic"):
        RandomResize("image", [4], mode="nearest", antialias=True)
    with pytest.raises(ValueError, match=r"sizes\[1\] must be a positive int"):
        RandomResize("image", [4, (3, 0)])


# --- shared behaviour ----------------------------------------------------------------------

ALL: list[Callable[[], BatchTransform]] = [
    lambda: Normalize("image", 0.5, 0.5),
    lambda: RandomCrop("image", 4),
    lambda: RandomHorizontalFlip("image"),
    lambda: RandomResize("image", [4]),
]


@pytest.mark.parametrize("make", ALL)
def test_missing_field_names_the_available_ones(make: Callable[[], BatchTransform]) -> None:
    with pytest.raises(KeyError, match=r"no field 'image'; its fields are \['label', 'pixels'\]"):
        make()({"pixels": images(), "label": torch.zeros(16)}, seeded(0))


@pytest.mark.parametrize("make", ALL)
def test_wrong_layout_names_the_field(make: Callable[[], BatchTransform]) -> None:
    with pytest.raises(ValueError, match=r"'image' must be a tensor of layout \(N, C, H, W\)"):
        make()({"image": torch.zeros(4, 8, 8)}, seeded(0))
    with pytest.raises(ValueError, match="got <class 'list'>"):
        make()({"image": [1, 2]}, seeded(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA generator")
@pytest.mark.parametrize("make", ALL)
def test_a_cuda_generator_is_refused(make: Callable[[], BatchTransform]) -> None:
    with pytest.raises(ValueError, match="CPU generator"):
        make()({"image": images(device="cuda")}, torch.Generator(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_the_same_as_cpu() -> None:
    augment = Compose([RandomCrop("image", 8, 2, "reflect"), RandomHorizontalFlip("image")])
    x = images()
    on_cpu = augment({"image": x}, seeded(3))["image"]
    on_cuda = augment({"image": x.cuda()}, seeded(3))["image"]
    assert torch.equal(on_cuda.cpu(), on_cpu)


def test_compose_applies_in_order_with_one_generator() -> None:
    steps: list[BatchTransform] = [
        RandomCrop("image", 8, 1),
        RandomHorizontalFlip("image"),
        Normalize("image", 0, 1),
    ]
    batch = {"image": images(), "label": torch.arange(16)}
    out = run_unchanged(Compose(steps), batch, 11)
    generator, expected = seeded(11), dict(batch)
    for step in steps:
        expected = step(expected, generator)
    assert torch.equal(out["image"], expected["image"])
    assert out["label"] is batch["label"]
    plain = apply_transforms(batch, [], seeded(0))
    assert plain == batch
    assert plain is not batch


def test_batch_generator_is_a_pure_function_of_its_key() -> None:
    def draw(seed: int, epoch: int, batch: int) -> list[float]:
        return torch.rand(4, generator=batch_generator(seed, epoch, batch)).tolist()

    assert draw(1, 2, 3) == draw(1, 2, 3)
    assert len({tuple(draw(*key)) for key in [(1, 2, 3), (1, 2, 4), (1, 3, 3), (2, 2, 3)]}) == 4
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        batch_generator(0, -1, 0)
