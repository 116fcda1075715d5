"""The shared synthetic data: shapes, determinism, and that class_images is learnable but not trivial."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pydata.synthetic import class_images, noise_latents, smooth_latents


def nearest_class_mean(
    train: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    test: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    classes: int,
) -> float:
    """Accuracy on ``test`` of the classifier that picks the class whose mean training image
    is nearest in raw pixel space."""
    x, y = train
    flat = x.reshape(len(x), -1).astype(np.float32)
    means = np.stack([flat[y == k].mean(axis=0) for k in range(classes)])
    queries = test[0].reshape(len(test[0]), -1).astype(np.float32)
    dist = (queries**2).sum(1)[:, None] - 2 * queries @ means.T + (means**2).sum(1)[None, :]
    return float((dist.argmin(axis=1) == test[1]).mean())


@pytest.mark.parametrize(("count", "classes", "size", "channels"), [(0, 10, 32, 3), (1, 1, 1, 1),
                                                                      (37, 4, 16, 3), (600, 10, 8, 2)])  # fmt: skip
def test_class_images_shapes_and_dtypes(count: int, classes: int, size: int, channels: int) -> None:
    images, labels = class_images(count, classes=classes, size=size, channels=channels)
    assert images.shape == (count, channels, size, size)
    assert images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels.shape == (count,)
    assert labels.dtype == np.int64
    assert ((labels >= 0) & (labels < classes)).all()


def test_class_images_deterministic_per_seed() -> None:
    first, first_labels = class_images(50, size=16, seed=3)
    again, again_labels = class_images(50, size=16, seed=3)
    other, _ = class_images(50, size=16, seed=4)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_labels, again_labels)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(("count", "classes"), [(1000, 10), (1003, 10), (7, 3)])
def test_class_images_labels_balanced_and_shuffled(count: int, classes: int) -> None:
    _, labels = class_images(count, classes=classes, size=4)
    counts = np.bincount(labels, minlength=classes)
    assert counts.max() - counts.min() <= 1
    if count >= 100:
        assert not np.array_equal(labels, np.sort(labels))


def test_class_images_uses_the_intensity_range() -> None:
    images, _ = class_images(200, size=32)
    assert 90 < images.mean() < 165
    assert images.std() > 30
    assert images.min() == 0
    assert images.max() == 255


def test_class_images_noise_free_is_less_noisy() -> None:
    clean, _ = class_images(100, size=32, noise=0.0)
    noisy, _ = class_images(100, size=32, noise=0.2)
    # Neighbouring pixels differ far less without the per-pixel noise.
    assert (
        np.abs(np.diff(clean.astype(np.int16), axis=-1)).mean()
        < 0.5 * np.abs(np.diff(noisy.astype(np.int16), axis=-1)).mean()
    )


def test_class_images_learnable_across_seeds_but_not_trivially() -> None:
    # Class patterns depend on the class id only: means from seed 0 classify seed 1's images.
    train = class_images(2000, size=32, seed=0)
    test = class_images(1000, size=32, seed=1)
    accuracy = nearest_class_mean(train, test, classes=10)
    assert 0.3 < accuracy < 0.9, accuracy  # chance is 0.1


@pytest.mark.parametrize(("count", "classes", "size", "channels"), [(-1, 10, 8, 3), (4, 0, 8, 3),
                                                                      (4, 10, 0, 3), (4, 10, 8, 0)])  # fmt: skip
def test_class_images_rejects_bad_arguments(
    count: int, classes: int, size: int, channels: int
) -> None:
    with pytest.raises(ValueError, match="count >= 0"):
        class_images(count, classes=classes, size=size, channels=channels)


def test_latents_shapes_dtypes_and_scale() -> None:
    smooth = smooth_latents(64, 4, 32)
    noise = noise_latents(64, 4, 32)
    for latents in (smooth, noise):
        assert latents.shape == (64, 4, 32, 32)
        assert latents.dtype == np.float16
        assert 0.7 < float(latents.astype(np.float32).std()) < 1.3
    # Smooth latents are correlated between neighbours; noise is not.
    s = smooth.astype(np.float32)
    n = noise.astype(np.float32)
    assert np.corrcoef(s[..., 1:].ravel(), s[..., :-1].ravel())[0, 1] > 0.8
    assert abs(np.corrcoef(n[..., 1:].ravel(), n[..., :-1].ravel())[0, 1]) < 0.05
