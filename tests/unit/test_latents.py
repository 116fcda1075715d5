"""LatentCache: latents read back within each codec's error bound of the encoder's float32 output,
stats in the metadata equal to a recomputation, refuse vs overwrite, atomic replacement, and
reading through MemoryMappedDataset, the Loader and the DataLoader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import pydata
from pydata.format.reader import ShardReader
from pydata.latents import METADATA_KEY, LatentCache
from pydata.synthetic import class_images

SAMPLES = 150  # not a multiple of the batch size
SIZE = 16
# Output rounding per stored dtype: (significand bits p, half the smallest subnormal d).
ROUNDING = {"float16": (11, 2.0**-25), "float32": (24, 2.0**-150), "bfloat16": (8, 2.0**-134)}


class TinyEncoder(torch.nn.Module):
    """A deterministic conv encoder: [N, 3, 16, 16] -> [N, 4, 4, 4], with a dropout so that
    eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(4, generator=generator))
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dropout(self.conv(x))) * 3


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = class_images(SAMPLES, size=SIZE, seed=1)
    path = tmp_path_factory.mktemp("latents") / "src"
    schema = {"image": pydata.Field("uint8", (3, SIZE, SIZE)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=20_000, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels})
    return path


def reference(source: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The encoder's float32 output for every sample in order, computed independently."""
    batch = pydata.MemoryMappedDataset(source).read_batch(np.arange(SAMPLES))
    with torch.no_grad():
        z = TinyEncoder().eval()(batch["image"].float() / 255)
    return z.numpy(), batch["label"].numpy()


def as_f64(values: npt.NDArray[Any], dtype: str) -> npt.NDArray[np.float64]:
    if dtype == "bfloat16":
        return (values.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return values.astype(np.float64)


def stored(z: npt.NDArray[np.float32], dtype: str) -> npt.NDArray[np.float64]:
    """The float32 latents rounded to the stored dtype, as float64."""
    if dtype == "bfloat16":
        return torch.from_numpy(z).to(torch.bfloat16).double().numpy()
    return z.astype(dtype).astype(np.float64)


def bound(z: npt.NDArray[np.float32], decoded: npt.NDArray[np.float64], codec: str, dtype: str) -> Any:
    """Per element: the codec's bound (csrc/core/codec.hpp, per channel = axis 0 of a latent) on
    the stored values, plus rounding to the stored dtype on the way in and out."""
    p, d = ROUNDING[dtype]
    x = stored(z, dtype)
    rounding = 2.0**-p * (np.abs(z) + np.abs(decoded)) + 2 * d
    channel_max = np.abs(x).max(axis=(2, 3), keepdims=True) * (1 + 2.0**-23)  # scale rounded up
    if codec.startswith("int8"):
        quantised = channel_max / 127 / 2
    elif codec.startswith("fp8"):
        s = channel_max / 448
        quantised = np.where(np.abs(x) >= 2.0**-6 * s, 2.0**-4 * np.abs(x), 2.0**-10 * s)
    else:
        quantised = np.zeros_like(x)
    return (quantised + rounding) * (1 + 2.0**-40)


def read_all(cache: LatentCache) -> dict[str, Any]:
    """Every sample through the Loader, in order; bfloat16 as uint16 bits."""
    batches = list(pydata.Loader(cache.dataset, 64, shuffle=False, num_threads=2))
    columns = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    return {k: (v.view(torch.int16).numpy().view(np.uint16) if v.dtype == torch.bfloat16 else v.numpy())
            for k, v in columns.items()}


@pytest.mark.parametrize(("codec", "dtype"), [
    ("int8", "float16"), ("int8+lz4", "float16"), ("fp8", "float16"), ("fp8+lz4", "float16"),
    ("raw", "float16"), ("shuffle+lz4", "float32"), ("int8+lz4", "float32"), ("int8+lz4", "bfloat16"),
])
def test_latents_read_back_within_the_codec_bound(source: Path, tmp_path: Path, codec: str, dtype: str) -> None:
    cache = LatentCache.build(TinyEncoder(), source, tmp_path / "cache", codec=codec, batch_size=64,
                              dtype=dtype, progress=False)
    z, labels = reference(source)
    got = read_all(cache)
    np.testing.assert_array_equal(got["label"], labels)  # dataset order, labels kept
    decoded = as_f64(got["latent"], dtype)
    error = np.abs(decoded - z)
    limit = bound(z, decoded, codec, dtype)
    assert (error <= limit).all(), f"worst excess {float((error - limit).max())}"
    if codec.startswith(("int8", "fp8")):
        assert error.max() > 2.0**-ROUNDING[dtype][0] * np.abs(z).max()  # really quantised

    stats = cache.stats
    assert (stats.codec, stats.dtype, stats.shape, stats.samples) == (codec, dtype, (4, 4, 4), SAMPLES)
    # rel=1e-5: the reference runs the encoder on one batch of 150, the build on batches of 64,
    # and float32 convolutions differ in their last bits between batch sizes.
    assert stats.max_abs == pytest.approx(float(error.max()), rel=1e-5, abs=1e-7)
    assert stats.rel_l2 == pytest.approx(float(np.linalg.norm(decoded - z) / np.linalg.norm(z)), rel=1e-5, abs=1e-7)


def test_stats_in_the_metadata_match_a_recomputation(source: Path, tmp_path: Path) -> None:
    cache = LatentCache.build(TinyEncoder(), source, tmp_path / "cache", shard_bytes=8192, progress=False)
    index = pydata.read_index(cache.path)
    stored_stats = index.metadata[METADATA_KEY]
    on_disk = 0
    for entry in index.shards:
        reader = ShardReader(cache.path / entry.file, entry, index.schema)
        on_disk += reader.section("latent").nbytes
        reader.close()
    assert len(index.shards) > 1
    assert stored_stats["nbytes"] == on_disk
    assert stored_stats["fp16_nbytes"] == SAMPLES * 64 * 2
    assert stored_stats["fp32_nbytes"] == SAMPLES * 64 * 4
    assert stored_stats["ratio_fp16"] == pytest.approx(SAMPLES * 128 / on_disk)
    assert stored_stats["bytes_per_sample"] == pytest.approx(on_disk / SAMPLES)
    assert stored_stats["source"] == str(source)
    assert stored_stats["input_field"] == "image"
    assert stored_stats["encoder"] == "TinyEncoder"
    z, _ = reference(source)
    decoded = cache.dataset.read_batch(np.arange(SAMPLES))["latent"].numpy().astype(np.float64)
    assert stored_stats["max_abs"] == pytest.approx(float(np.abs(decoded - z).max()), rel=1e-5)
    assert stored_stats["rel_l2"] == pytest.approx(float(np.linalg.norm(decoded - z) / np.linalg.norm(z)), rel=1e-5)
    assert LatentCache(cache.path).stats == cache.stats


def test_a_built_cache_is_refused_unless_overwrite(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = LatentCache.build(TinyEncoder(), source, out, codec="int8+lz4", progress=False)
    with pytest.raises(FileExistsError, match=r"already holds a latent cache \(150 samples, int8\+lz4.*overwrite=True"):
        LatentCache.build(TinyEncoder(), source, out, codec="fp8", progress=False)
    assert LatentCache(out).stats == first.stats  # untouched

    second = LatentCache.build(TinyEncoder(), source, out, codec="fp8", overwrite=True, progress=False)
    assert second.stats.codec == "fp8"
    index = pydata.read_index(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.json", *(s.file for s in index.shards)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temporary or old copy left
    np.testing.assert_array_equal(read_all(second)["label"], reference(source)[1])


def test_a_directory_that_is_not_a_dataset_is_never_replaced(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a pydata dataset"):
        LatentCache.build(TinyEncoder(), source, out, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="is the source dataset"):
        LatentCache.build(TinyEncoder(), source, source, overwrite=True, progress=False)


def test_a_failed_build_leaves_the_old_cache(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    old = LatentCache.build(TinyEncoder(), source, out, progress=False)
    calls = 0

    def failing(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 2:
            msg = "encoder failed"
            raise RuntimeError(msg)
        return x[:, :, ::4, ::4]

    with pytest.raises(RuntimeError, match="encoder failed"):
        LatentCache.build(failing, source, out, batch_size=64, overwrite=True, progress=False)
    assert LatentCache(out).stats == old.stats
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_eval_mode_during_the_build_and_restored_after(source: Path, tmp_path: Path) -> None:
    encoder = TinyEncoder().train()
    cache = LatentCache.build(encoder.forward, source, tmp_path / "cache", codec="raw", dtype="float32",
                              progress=False)
    assert encoder.training
    z, _ = reference(source)  # computed in eval mode: no dropout
    np.testing.assert_allclose(cache.dataset.read_batch(np.arange(SAMPLES))["latent"].numpy(), z, rtol=1e-6)
    assert cache.stats.encoder == "TinyEncoder.forward"
    assert cache.stats.max_abs == pytest.approx(0, abs=1e-6)


def test_reading_through_the_dataloader_and_by_sample(source: Path, tmp_path: Path) -> None:
    cache = LatentCache.build(TinyEncoder(), pydata.MemoryMappedDataset(source), tmp_path / "cache",
                              batch_size=32, keep_fields=(), latent_field="z", progress=False)
    assert list(cache.dataset.schema) == ["z"]
    assert cache.dataset.schema["z"] == pydata.Field("float16", (4, 4, 4), codec="int8+lz4")
    expected = cache.dataset.read_batch(np.arange(SAMPLES))["z"]
    loader = pydata.create_dataloader(cache.dataset, 40, shuffle=False, num_workers=0)
    assert torch.equal(torch.cat([b["z"] for b in loader]), expected)
    assert torch.equal(cache.dataset[7]["z"], expected[7])
    assert len(cache) == SAMPLES
    assert "int8+lz4" in repr(cache)


def test_bad_arguments_are_named(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"codec 'zip'.*dtype 'int8'.*field 'pixels'.*field 'id'"):
        LatentCache.build(TinyEncoder(), source, tmp_path / "c", codec="zip", dtype="int8",
                          input_field="pixels", keep_fields=("id",))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        LatentCache.build(TinyEncoder(), source, tmp_path / "c", batch_size=0)
    with pytest.raises(ValueError, match=r"must return \[N, \.\.\.\] latents for N=64 inputs, got \(1,"):
        LatentCache.build(lambda x: x[:1], source, tmp_path / "c", batch_size=64, progress=False)
    with pytest.raises(pydata.FormatError, match=r"samples 0\.\.63: .*inf; quantised codecs need finite values"):
        LatentCache.build(lambda x: x / 0, source, tmp_path / "c", batch_size=64, progress=False)
    assert not (tmp_path / "c").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_plain_dataset_is_not_a_cache(source: Path) -> None:
    with pytest.raises(pydata.FormatError, match="not a latent cache"):
        LatentCache(source)


def test_malformed_stats_are_named(tmp_path: Path) -> None:
    schema = {"latent": pydata.Field("float16", (2,))}
    with pydata.ShardWriter(tmp_path / "c", schema, metadata={METADATA_KEY: {"codec": "raw"}},
                            progress=False) as writer:
        writer.write({"latent": np.zeros(2, np.float16)})
    with pytest.raises(pydata.FormatError, match=r"index\.json: metadata 'latent_cache' must be an object with \['field'"):
        LatentCache(tmp_path / "c")
