"""pydata.dali: DALI pipelines deliver the Loader's batches (raw and compressed fields, shards,
epochs, resume, streaming), image ops equal numpy's, and a clear error without DALI."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

import pydata  # noqa: E402
from pydata.dali import Augment, DALILoader, create_pipeline  # noqa: E402
from pydata.datasets.streaming import StreamingDataset  # noqa: E402
from pydata.loader.transforms import Normalize  # noqa: E402

SAMPLES = 301  # not a multiple of the batch size or the shard counts used
BATCH = 32
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
Data = dict[str, np.ndarray]
Batches = list[dict[str, torch.Tensor]]


@pytest.fixture(scope="module")
def data() -> Data:
    rng = np.random.default_rng(11)
    floats = rng.standard_normal((SAMPLES, 6)).astype(np.float32)
    return {"image": rng.integers(0, 256, (SAMPLES, 3, 8, 10), dtype=np.uint8),
            "label": np.arange(SAMPLES, dtype=np.int64),
            "latent": rng.standard_normal((SAMPLES, 4, 4, 4)).astype(np.float16),
            "packed": rng.standard_normal((SAMPLES, 2, 5)).astype(np.float32),
            # bfloat16 as its bits: the top half of float32 values (random bits would hold NaNs)
            "bf16": (floats.view(np.uint32) >> 16).astype(np.uint16)}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Path:
    path = tmp_path_factory.mktemp("dali") / "ds"
    schema = {"image": pydata.Field("uint8", (3, 8, 10)), "label": pydata.Field("int64", ()),
              "latent": pydata.Field("float16", (4, 4, 4), codec="int8+lz4"),
              "packed": pydata.Field("float32", (2, 5), codec="lz4"),
              "bf16": pydata.Field("bfloat16", (6,))}
    with pydata.ShardWriter(path, schema, shard_bytes=16_000, progress=False) as writer:
        writer.write_batch(data)
    return path


@pytest.fixture
def dataset(dataset_dir: Path) -> Any:
    return pydata.MemoryMappedDataset(dataset_dir)


def epoch(loader: Any) -> Batches:
    return [{k: v.clone() for k, v in batch.items()} for batch in loader]


def assert_same_batches(got: Batches, want: Batches) -> None:
    assert [len(b["label"]) for b in got] == [len(b["label"]) for b in want]
    for number, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype, (number, name)
            assert torch.equal(a[name], b[name]), (number, name)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_equal_the_loaders_over_two_epochs(dataset: Any, drop_last: bool) -> None:
    dali = DALILoader(dataset, BATCH, seed=3, drop_last=drop_last, num_threads=1)
    loader = pydata.Loader(dataset, BATCH, seed=3, drop_last=drop_last, num_threads=1)
    assert len(dali) == len(loader) == (SAMPLES // BATCH if drop_last else -(-SAMPLES // BATCH))
    first = epoch(dali)
    assert_same_batches(first, epoch(loader))
    assert dali.epoch == 1
    second = epoch(dali)  # the pipeline kept from epoch 0 runs epoch 1
    assert_same_batches(second, epoch(loader))
    assert first[0]["label"].tolist() != second[0]["label"].tolist()
    dali.set_epoch(5)  # not the next epoch: a new pipeline
    loader.set_epoch(5)
    assert_same_batches(epoch(dali), epoch(loader))


def test_compressed_and_bfloat16_fields_arrive_decoded(dataset: Any, data: Data) -> None:
    batch = next(iter(DALILoader(dataset, BATCH, seed=1, num_threads=1)))
    ids = batch["label"].numpy()
    np.testing.assert_array_equal(batch["packed"].numpy(), data["packed"][ids])  # lz4: lossless
    assert batch["bf16"].dtype == torch.bfloat16
    np.testing.assert_array_equal(batch["bf16"].view(torch.uint16).numpy(), data["bf16"][ids])
    latent = batch["latent"].float().numpy()  # int8+lz4: decoded, within the quantisation step
    np.testing.assert_allclose(latent, data["latent"][ids].astype(np.float32), atol=0.05)


def test_shards_are_the_loaders_rank_shares_and_cover_the_epoch_once(dataset: Any) -> None:
    shares = []
    for shard in range(3):
        dali = DALILoader(dataset, BATCH, seed=2, shard_id=shard, num_shards=3, num_threads=1,
                          fields=["label"])
        loader = pydata.Loader(dataset, BATCH, seed=2, rank=shard, world_size=3, fields=["label"])
        got = epoch(dali)
        assert_same_batches(got, epoch(loader))
        shares.append(torch.cat([b["label"] for b in got]).numpy())
    assert len({len(s) for s in shares}) == 1
    everything = np.concatenate(shares)
    assert len(np.unique(everything)) == len(everything) == (SAMPLES // 3) * 3


def test_normalize_equals_the_loaders_normalize(dataset: Any) -> None:
    dali = DALILoader(dataset, BATCH, seed=4, fields=["image", "label"], normalize=(MEAN, STD),
                      num_threads=1)
    loader = pydata.Loader(dataset, BATCH, seed=4, fields=["image", "label"], num_threads=1,
                           transforms=[Normalize("image", MEAN, STD)])
    for a, b in zip(epoch(dali), epoch(loader), strict=True):
        assert torch.equal(a["label"], b["label"])
        assert a["image"].dtype == torch.float32 and a["image"].shape == b["image"].shape
        torch.testing.assert_close(a["image"], b["image"], rtol=1e-5, atol=1e-5)


def expected_images(data: Data, ids: np.ndarray, augment: Augment, seed: int,
                    epoch_number: int) -> np.ndarray:
    """Crop, flip and normalise in numpy, with the draws the source documents."""
    top, left, flipped = augment.draw(seed, epoch_number, ids)
    assert augment.crop is not None
    h, w = augment.crop
    out = []
    for i, t, l, f in zip(ids, top, left, flipped, strict=True):
        image = data["image"][i][:, t : t + h, l : l + w]
        out.append(image[:, :, ::-1] if f else image)
    images = np.stack(out).astype(np.float32) / 255
    mean, std = (np.array(v, np.float32)[:, None, None] for v in (MEAN, STD))
    return (images - mean) / std


def test_crop_flip_normalize_equal_numpy_and_vary_per_sample(dataset: Any, data: Data) -> None:
    augment = Augment(8, 10, crop=(5, 6), flip=0.5)
    dali = DALILoader(dataset, BATCH, seed=6, fields=["image", "label"], normalize=(MEAN, STD),
                      crop=(5, 6), flip=0.5, num_threads=1)
    for epoch_number in range(2):
        for batch in dali:
            ids = batch["label"].numpy()
            want = expected_images(data, ids, augment, 6, epoch_number)
            np.testing.assert_allclose(batch["image"].numpy(), want, rtol=1e-5, atol=1e-5)
    top, left, flipped = augment.draw(6, 0, np.arange(SAMPLES))
    assert len(np.unique(top)) == 4 and len(np.unique(left)) == 5  # every offset occurs
    assert 0.35 < flipped.mean() < 0.65
    assert not np.array_equal(augment.draw(6, 1, np.arange(SAMPLES))[1], left)  # new per epoch


def test_augment_draw_is_a_function_of_seed_epoch_and_sample() -> None:
    augment = Augment(8, 8, crop=(4, 4), flip=1.0)
    ids = np.array([5, 17, 200])
    whole = augment.draw(1, 2, ids)
    alone = [augment.draw(1, 2, ids[i : i + 1]) for i in range(3)]
    for part, values in enumerate(whole):
        assert values.tolist() == [a[part][0] for a in alone]
    assert whole[2].all()  # flip=1 mirrors every sample
    assert not Augment(8, 8, flip=0.0).draw(1, 2, ids)[2].any()
    with pytest.raises(ValueError, match="crop"):
        Augment(8, 8, crop=(9, 4))


@pytest.mark.integration
def test_parallel_per_sample_mode_delivers_the_same_batches(dataset: Any) -> None:
    fields = ["image", "label", "latent"]
    options: dict[str, Any] = {"seed": 8, "fields": fields, "crop": 6, "flip": 0.5, "num_threads": 1}
    parallel = DALILoader(dataset, BATCH, parallel=True, py_num_workers=2, **options)
    batch_mode = DALILoader(dataset, BATCH, **options)
    loader = pydata.Loader(dataset, BATCH, seed=8, fields=["label", "latent"], num_threads=1)
    for _ in range(2):  # the second epoch runs on the workers started for the first
        got = epoch(parallel)
        assert_same_batches(got, epoch(batch_mode))
        assert_same_batches([{k: b[k] for k in ("label", "latent")} for b in got], epoch(loader))
    assert len(got[-1]["label"]) == SAMPLES % BATCH  # the padded last batch is cut back


@pytest.mark.parametrize("midpoint", [1, 4])
def test_resume_continues_the_uninterrupted_run(dataset: Any, midpoint: int) -> None:
    options: dict[str, Any] = {"seed": 9, "fields": ["image", "label"], "crop": 6, "flip": 0.5,
                               "num_threads": 1}
    full = epoch(DALILoader(dataset, BATCH, **options))
    first = DALILoader(dataset, BATCH, **options)
    head = []
    for batch in first:
        head.append({k: v.clone() for k, v in batch.items()})
        if len(head) == midpoint:
            break
    state = first.state_dict()
    assert state["consumed"] == midpoint * BATCH
    resumed = DALILoader(dataset, BATCH, **options)
    resumed.load_state_dict(state)
    assert len(resumed) == len(full) - midpoint
    assert_same_batches(head + epoch(resumed), full)
    assert_same_batches(epoch(first), full[midpoint:])  # the same loader, after leaving early


def test_states_move_between_dali_and_the_loader_and_across_shard_counts(dataset: Any) -> None:
    dali = DALILoader(dataset, BATCH, seed=10, fields=["label"], num_threads=1)
    loader = pydata.Loader(dataset, BATCH, seed=10, fields=["label"], num_threads=1)
    want = epoch(loader)
    for _ in zip(range(3), dali, strict=False):
        pass
    loader.load_state_dict(dali.state_dict())
    assert_same_batches(epoch(loader), want[3:])
    halves = [DALILoader(dataset, BATCH // 2, seed=10, fields=["label"], shard_id=r, num_shards=2,
                         num_threads=1) for r in range(2)]
    for half in halves:
        half.load_state_dict({"epoch": 0, "consumed": 3 * BATCH, "seed": 10, "num_samples": SAMPLES})
    rest = np.concatenate([b["label"].numpy() for half in halves for b in half])
    # Two strided shares of order[96:] read order[96:300]: all but the odd sample out at the end.
    assert sorted(rest.tolist()) == sorted(torch.cat([b["label"] for b in want[3:]]).tolist()[:-1])
    with pytest.raises(ValueError, match="seed"):
        dali.load_state_dict({**dali.state_dict(), "seed": 99})


def test_streaming_dataset_over_file_url(dataset_dir: Path, tmp_path: Path) -> None:
    def stream() -> StreamingDataset:
        return StreamingDataset(f"file://{dataset_dir}", local=tmp_path / "cache", batch_size=BATCH,
                                shuffle_window=2, fields=["image", "label", "latent"])

    dali = DALILoader(stream(), BATCH, seed=12, num_threads=1)
    loader = pydata.Loader(stream(), BATCH, seed=12, num_threads=1)
    for _ in range(2):
        assert_same_batches(epoch(dali), epoch(loader))


def test_pipeline_is_usable_directly(dataset: Any, data: Data) -> None:
    pipe = create_pipeline(dataset, BATCH, fields=["label", "image"], shuffle=False, num_threads=1,
                           shard_id=1, num_shards=2)
    pipe.build()
    labels, images = (out.as_array() for out in pipe.run())
    np.testing.assert_array_equal(labels, np.arange(1, 2 * BATCH, 2))
    np.testing.assert_array_equal(images, data["image"][1 : 2 * BATCH : 2])


def test_bad_arguments_are_named(dataset_dir: Path, tmp_path: Path) -> None:
    schema = {"label": pydata.Field("int64", ()), "caption": pydata.Field("str")}
    with pydata.ShardWriter(tmp_path / "text", schema, progress=False) as writer:
        writer.write({"label": 0, "caption": "a cat"})
    with pytest.raises(ValueError, match="field 'caption' \\(str\\)"):
        DALILoader(pydata.MemoryMappedDataset(tmp_path / "text"), 4)
    dataset = pydata.MemoryMappedDataset(dataset_dir)
    with pytest.raises(ValueError, match="device_id"):
        DALILoader(dataset, 4, device="gpu")
    with pytest.raises(ValueError, match="'label', which must be \\(C, H, W\\)"):
        create_pipeline(dataset, 4, image="label", flip=0.5)
    with pytest.raises(ValueError, match="one mean and std per channel"):
        create_pipeline(dataset, 4, normalize=([0.5, 0.5], [0.2, 0.2]))


def test_without_dali_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what an absent package looks like
    for name in [m for m in sys.modules if m == "pydata.dali" or m.startswith("pydata.dali.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match='pip install "pydata\\[dali\\]"'):
        importlib.import_module("pydata.dali")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_pipeline_equals_the_cpu_pipeline(dataset: Any) -> None:
    options: dict[str, Any] = {"seed": 13, "fields": ["image", "label"], "normalize": (MEAN, STD),
                               "crop": 6, "flip": 0.5, "num_threads": 1}
    cpu = epoch(DALILoader(dataset, BATCH, **options))
    gpu = epoch(DALILoader(dataset, BATCH, device="gpu", device_id=0, **options))
    assert gpu[0]["image"].is_cuda
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.equal(a["label"], b["label"].cpu())
        torch.testing.assert_close(a["image"], b["image"].cpu(), rtol=1e-5, atol=1e-5)
