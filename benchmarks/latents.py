"""The compressed latent cache: bytes per sample, error, decode throughput and Loader epochs per codec.

    python benchmarks/latents.py [--quick] [--samples N] [--size PX] [--train-steps N] [--repeats N]

The latents come from the bundled ``pydata.models.AutoEncoder`` (3 -> 4 channels, 4x
downsampling), trained briefly (``--train-steps`` Adam steps, batch 32, on 64x64
``pydata.synthetic.class_images`` of another seed; the reconstruction MSE before and after is
reported, so the run shows whether it learned) and then run over ``--samples`` class images of
``--size`` pixels by ``pydata.LatentCache.build``, once per codec: raw float16 (the fixed,
zero-copy layout), ``int8``, ``int8+lz4`` and ``fp8+lz4``. Per codec it reports:

- bytes per sample of the latent field on disk and the ratio against raw float16, and the error
  against the encoder's float32 output (max abs, relative L2), all from the cache's stats;
- decode throughput: every latent read in order, batches of 256, through the dataset's
  BatchReader into one reused buffer (a gather for raw, a C++ batch decode otherwise), with 1
  and 2 core threads; samples/s and decoded MB/s;
- a shuffled ``pydata.Loader`` epoch of the latent field (batch 256, 2 threads), samples/s.

Each cache's files are read in full right before every timed run (this VM pages out idle file
pages after ~30 s); cases are timed in interleaved rounds, median reported. The machine is shared
with other jobs while this runs, so figures are noisy; compare within one run. Prints markdown
tables and writes ``results/latents.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import markdown_table, measure_interleaved_each, write_results

import pydata
from pydata.models.autoencoder import AutoEncoder
from pydata.page_cache import touch_files
from pydata.synthetic import class_images

CODECS = ("raw", "int8", "int8+lz4", "fp8+lz4")
BATCH = 256


def train(model: AutoEncoder, steps: int, seed: int = 1) -> dict[str, float]:
    """A few Adam steps on 64x64 class images; returns the MSE on held-out images before/after."""
    images, _ = class_images(max(steps, 1) * 32 + 256, size=64, seed=seed)
    data = torch.from_numpy(images).float() / 255
    held_out, train_set = data[:256], data[256:]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def mse() -> float:
        with torch.no_grad():
            return float(((model(held_out) - held_out) ** 2).mean())

    before = mse()
    for step in range(steps):
        batch = train_set[step * 32:(step + 1) * 32]
        loss = ((model(batch) - batch) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return {"mse_before": before, "mse_after": mse(), "steps": steps}


def write_images(path: Path, samples: int, size: int) -> Path:
    images, labels = class_images(samples, size=size, seed=0)
    schema = {"image": pydata.Field("uint8", (3, size, size)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, progress=False) as writer:
        writer.write_batch({"image": images, "label": labels})
    return path


def decode_all(dataset: Any, threads: int) -> None:
    reader = dataset.batch_reader(["latent"])
    out = reader.allocate(BATCH)
    for start in range(0, len(dataset), BATCH):
        idx = np.arange(start, min(start + BATCH, len(dataset)))
        reader.read_batch(idx, {"latent": out["latent"][:len(idx)]}, threads=threads)


def loader_epoch(dataset: Any) -> int:
    samples = 0
    for batch in pydata.Loader(dataset, BATCH, shuffle=True, num_threads=2, fields=["latent"], pin_memory=False):
        samples += len(batch["latent"])
    return samples


def build_caches(encoder: AutoEncoder, source: Path, root: Path) -> dict[str, pydata.LatentCache]:
    caches = {}
    for codec in CODECS:
        began = time.perf_counter()
        caches[codec] = pydata.LatentCache.build(encoder.encode, source, root / codec.replace("+", "-"),
                                                 codec=codec, progress=False)
        print(f"built {codec:9s} cache in {time.perf_counter() - began:.1f} s: {caches[codec]}")
    return caches


def measure(caches: dict[str, pydata.LatentCache], repeats: int) -> dict[str, dict[str, Any]]:
    cases, before = {}, {}
    for codec, cache in caches.items():
        shards = [cache.path / s.file for s in cache.dataset.index.shards]
        for threads in (1, 2):
            cases[f"decode {codec} t{threads}"] = lambda c=cache, t=threads: decode_all(c.dataset, t)
            before[f"decode {codec} t{threads}"] = lambda s=shards: touch_files(s)
        cases[f"loader {codec}"] = lambda c=cache: loader_epoch(c.dataset)
        before[f"loader {codec}"] = lambda s=shards: touch_files(s)
    timings = measure_interleaved_each(cases, repeats=repeats, before=before)
    results: dict[str, dict[str, Any]] = {}
    for codec, cache in caches.items():
        n, stats = len(cache), cache.stats
        decoded = n * int(np.prod(stats.shape)) * 2
        row = {**stats.to_json(), "epoch_samples": n}
        for threads in (1, 2):
            median = timings[f"decode {codec} t{threads}"].median
            row[f"decode_t{threads}_samples_per_s"] = n / median
            row[f"decode_t{threads}_mb_per_s"] = decoded / median / 1e6
        row["loader_samples_per_s"] = n / timings[f"loader {codec}"].median
        row["timings"] = {k: v.samples for k, v in timings.items() if codec in k.split()}
        results[codec] = row
    return results


def tables(results: dict[str, dict[str, Any]]) -> str:
    raw = results["raw"]
    rows = [[codec, f"{r['bytes_per_sample']:.0f}", f"{r['ratio_fp16']:.2f}x", f"{r['max_abs']:.3g}",
             f"{r['rel_l2']:.2e}", f"{r['decode_t1_samples_per_s']:,.0f}", f"{r['decode_t2_samples_per_s']:,.0f}",
             f"{r['decode_t2_mb_per_s']:,.0f}", f"{r['loader_samples_per_s']:,.0f}",
             f"{r['loader_samples_per_s'] / raw['loader_samples_per_s']:.2f}x"]
            for codec, r in results.items()]
    headers = ["codec", "bytes/sample", "vs fp16", "max abs err", "rel L2 err", "decode 1t samples/s",
               "decode 2t samples/s", "decode 2t MB/s", "Loader samples/s", "Loader vs raw fp16"]
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--samples", type=int, default=4096, help="images to encode (default: 4096)")
    parser.add_argument("--size", type=int, default=128, help="image side; latents are size/4 (default: 128)")
    parser.add_argument("--train-steps", type=int, default=150, help="autoencoder Adam steps (default: 150)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default: 5)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.size, args.train_steps, args.repeats = 512, 64, 10, 2
    torch.manual_seed(0)
    model = AutoEncoder()
    training = train(model, args.train_steps)
    print(f"autoencoder: {training['steps']} steps, held-out MSE {training['mse_before']:.4f} -> "
          f"{training['mse_after']:.4f}")
    with tempfile.TemporaryDirectory(prefix="pydata-latents-") as tmp:
        source = write_images(Path(tmp) / "images", args.samples, args.size)
        caches = build_caches(model.eval(), source, Path(tmp))
        results = measure(caches, args.repeats)
    print()
    print(f"{args.samples} latents of {list(caches['raw'].stats.shape)} from {args.size}x{args.size} images; "
          f"median of {args.repeats} interleaved rounds (the order rotating, so that load from other "
          "processes spreads over every case)")
    print()
    print(tables(results))
    path = write_results("latents", {"settings": vars(args), "autoencoder": training, "codecs": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
