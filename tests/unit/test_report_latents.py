"""``pydata inspect`` on a latent cache: the ratio against raw float16/float32 and the error come
from the cache's metadata; other datasets show no latent line; damaged stats are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pydata
from pydata.cli import main
from pydata.latents import METADATA_KEY, LatentCache
from pydata.report import dataset_report, format_report
from pydata.synthetic import class_images


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> LatentCache:
    root = tmp_path_factory.mktemp("report")
    images, labels = class_images(40, size=8)
    schema = {"image": pydata.Field("uint8", (3, 8, 8)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(root / "src", schema, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels})
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(3, 8, 2, stride=2)  # [N, 8, 4, 4]
    return LatentCache.build(encoder, root / "src", root / "cache", codec="int8+lz4", progress=False)


def test_report_carries_the_stats(cache: LatentCache) -> None:
    report = dataset_report(cache.path)
    stats = report["latent_cache"]
    assert stats == cache.stats.to_json()
    assert stats["fp16_nbytes"] == 40 * 8 * 4 * 4 * 2
    assert stats["nbytes"] == report["fields"]["latent"]["bytes"]  # the same bytes inspect counts
    assert stats["ratio_fp16"] == pytest.approx(stats["fp16_nbytes"] / report["fields"]["latent"]["bytes"])
    json.dumps(report)


def test_table_shows_ratio_and_error(cache: LatentCache, capsys: pytest.CaptureFixture[str]) -> None:
    s = cache.stats
    text = format_report(dataset_report(cache.path))
    assert f"{s.ratio_fp16:.2f}x smaller than raw fp16, {s.ratio_fp32:.2f}x than fp32" in text
    assert f"max abs {s.max_abs:.3g}, relative L2 {s.rel_l2:.3g}" in text
    assert "metadata" not in text  # the stats are the only metadata, shown in their own lines
    assert main(["inspect", str(cache.path)]) == 0
    assert f"relative L2 {s.rel_l2:.3g}" in capsys.readouterr().out
    assert main(["inspect", str(cache.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latent_cache"]["codec"] == "int8+lz4"


def test_other_datasets_have_no_latent_line(tmp_path: Path) -> None:
    with pydata.ShardWriter(tmp_path / "ds", {"x": pydata.Field("float16", (4,))}, metadata={"note": 1},
                            progress=False) as writer:
        writer.write({"x": np.zeros(4, np.float16)})
    report = dataset_report(tmp_path / "ds")
    assert report["latent_cache"] is None
    text = format_report(report)
    assert "latent cache" not in text
    assert 'metadata  {"note": 1}' in text


def test_damaged_stats_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = {"field": "x", "codec": "raw", "dtype": "float16", "shape": "four"}
    with pydata.ShardWriter(tmp_path / "ds", {"x": pydata.Field("float16", (4,))},
                            metadata={METADATA_KEY: stats}, progress=False) as writer:
        writer.write({"x": np.zeros(4, np.float16)})
    with pytest.raises(pydata.FormatError, match=r"index\.json: metadata 'latent_cache' must be an object with \['samples'"):
        dataset_report(tmp_path / "ds")
    assert main(["inspect", str(tmp_path / "ds")]) == 1
    assert "metadata 'latent_cache'" in capsys.readouterr().err
