"""A DALI pipeline (``pydata.dali``) against ``pydata.Loader`` on the same data, on the CPU.

    python benchmarks/dali.py [--quick] [--samples N] [--repeats N]

One synthetic dataset (``pydata.synthetic.class_images``: a uint8 3x64x64 image and an int64
label per sample, 12,296 bytes) written with ``pydata.ShardWriter``. Every case reads one
shuffled epoch in batches of 256:

1. ``pydata.Loader``, 1 and 2 threads, the batches as stored;
2. ``pydata.Loader`` with batch transforms: ``RandomCrop(56)``, ``RandomHorizontalFlip(0.5)``,
   ``Normalize`` (float32 out), 1 and 2 threads;
3. ``pydata.dali.DALILoader`` (batch-mode external source, CPU-only pipeline with
   ``device_id=None``), 1 and 2 DALI threads, the batches as stored;
4. the same with crop 56, flip 0.5 and normalise as one ``fn.crop_mirror_normalize``;
5. ``DALILoader(parallel=True)``: per-sample external source in 2 DALI worker processes, as
   stored, 1 DALI thread.

Before timing, one untimed epoch of each case must deliver every sample once (count and sum of
labels) with the expected image shape and dtype. Right before each timed epoch the shards are
touched page by page through the dataset's maps (``MemoryMappedDataset.prefault``: this VM
pages out file pages idle for ~30 s). Cases run in interleaved rounds; the table reports the
best epoch (the JSON has the median and every epoch's time). DALI pipelines are built during the
check epoch and kept: later epochs follow on, so build time is not timed.
Prints a markdown table and writes ``results/dali.json``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _common import markdown_table, measure_interleaved_each, write_results

import pydata
from pydata.loader.transforms import Normalize, RandomCrop, RandomHorizontalFlip
from pydata.synthetic import class_images

BATCH = 256
CROP = 56
SAMPLE_BYTES = 3 * 64 * 64 + 8  # 12,296: an image and a label
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass
class Case:
    """One row: a loader whose iteration is one epoch."""

    name: str
    setting: str
    ops: bool
    loader: Any
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name} | {self.setting} | {'ops' if self.ops else 'as stored'}"

    def epoch(self) -> int:
        return sum(len(batch["label"]) for batch in self.loader)


def write_dataset(root: Path, count: int, seed: int) -> Path:
    images, labels = class_images(count, size=64, seed=seed)
    path = root / "ds"
    schema = {"image": pydata.Field("uint8", (3, 64, 64)), "label": pydata.Field("int64", ())}
    with pydata.ShardWriter(path, schema, shard_bytes=64 << 20, progress=False) as writer:
        for s in range(0, count, 4096):
            writer.write_batch({"image": images[s : s + 4096], "label": labels[s : s + 4096]})
    return path


def cases(ds: Any, threads: list[int]) -> list[Case]:
    from pydata.dali import DALILoader

    out = []
    ops = [RandomCrop("image", CROP), RandomHorizontalFlip("image", 0.5), Normalize("image", MEAN, STD)]
    dali_ops = {"normalize": (MEAN, STD), "crop": CROP, "flip": 0.5}
    for t in threads:
        setting = f"{t} thread{'s' * (t > 1)}"
        out.append(Case("pydata.Loader", setting, False, pydata.Loader(ds, BATCH, seed=0, num_threads=t)))
        out.append(Case("pydata.Loader + batch transforms", setting, True,
                        pydata.Loader(ds, BATCH, seed=0, num_threads=t, transforms=ops)))
        out.append(Case("DALILoader, batch source", setting, False,
                        DALILoader(ds, BATCH, seed=0, num_threads=t)))
        out.append(Case("DALILoader, batch source + crop_mirror_normalize", setting, True,
                        DALILoader(ds, BATCH, seed=0, num_threads=t, **dali_ops)))
    out.append(Case("DALILoader, parallel per-sample source", "2 workers, 1 thread", False,
                    DALILoader(ds, BATCH, seed=0, num_threads=1, parallel=True, py_num_workers=2)))
    return out


def check(case: Case, count: int, label_sum: int) -> str:
    """One untimed epoch: every sample once, images of the expected shape and dtype."""
    seen, total = 0, 0
    for batch in case.loader:
        image = batch["image"]
        shape, dtype = ((CROP, CROP), torch.float32) if case.ops else ((64, 64), torch.uint8)
        if tuple(image.shape[2:]) != shape or image.dtype != dtype:
            return f"failed check: image {tuple(image.shape)} {image.dtype}"
        seen += len(batch["label"])
        total += int(batch["label"].sum())
    return "" if (seen, total) == (count, label_sum) else f"failed check: {seen} samples, label sum {total}"


def report(all_cases: list[Case], timings: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    rows = []
    for case in all_cases:
        row: dict[str, Any] = {"case": case.name, "setting": case.setting,
                               "ops": "crop+flip+normalise" if case.ops else "as stored", "note": case.note}
        t = timings.get(case.key)
        if t is not None:
            row |= {"samples_per_s": count / t.best, "median_samples_per_s": count / t.median,
                    "mb_per_s": count * SAMPLE_BYTES / t.best / 1e6, "spread": t.spread, "seconds": t.samples}
        rows.append(row)
    base = {(r["setting"], r["ops"]): r.get("samples_per_s") for r in rows if r["case"].startswith("pydata.Loader")}
    for r in rows:
        loader = base.get((r["setting"], r["ops"]))
        r["vs_loader"] = r["samples_per_s"] / loader if loader and "samples_per_s" in r else None
    return rows


def _cells(row: Mapping[str, Any]) -> list[object]:
    if row.get("samples_per_s") is None:
        return ["—"] * 5
    ratio = row["vs_loader"] if row["vs_loader"] is not None else "—"
    return [f"{row['samples_per_s']:,.0f}", f"{row['median_samples_per_s']:,.0f}", f"{row['mb_per_s']:,.0f}",
            ratio, row["spread"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4,096 samples, 3 rounds: a smoke run")
    parser.add_argument("--samples", type=int, help="samples in the dataset (default 20,480: 0.25 GB)")
    parser.add_argument("--repeats", type=int, help="timed epochs per case (default 5; 3 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = args.samples or (4096 if args.quick else 20_480)
    repeats = args.repeats or (3 if args.quick else 5)

    with tempfile.TemporaryDirectory(prefix="pydata-dali-") as tmp:
        started = time.perf_counter()
        ds = pydata.MemoryMappedDataset(write_dataset(Path(tmp), count, args.seed))
        print(f"wrote {count} samples in {time.perf_counter() - started:.1f} s")
        label_sum = int(sum(int(b["label"].sum()) for b in pydata.Loader(ds, 4096, shuffle=False)))
        all_cases = cases(ds, [1, 2])
        print("checking every case: one untimed epoch each must deliver every sample once")
        for case in all_cases:
            ds.prefault()
            case.note = check(case, count, label_sum)
            print(f"  {case.key}: {case.note or 'ok'}")
        timed = [c for c in all_cases if not c.note]
        print(f"timing {len(timed)} cases: {repeats} interleaved rounds of one epoch each, the shards' "
              "pages touched right before each epoch (hot page cache)")
        timings = measure_interleaved_each({c.key: c.epoch for c in timed}, repeats=repeats,
                                           before={c.key: ds.prefault for c in timed}, warmup=False)
        rows = report(all_cases, timings, count)

    print(f"\n## One shuffled epoch of {count} samples ({count * SAMPLE_BYTES / 1e9:.2f} GB), batches of "
          f"{BATCH}, CPU, best of {repeats} (hot)\n")
    print(markdown_table(["case", "ops", "threads", "samples/s (best)", "samples/s (median)", "MB/s",
                          "x Loader (same threads, ops)", "spread", "note"],
                         [[r["case"], r["ops"], r["setting"], *_cells(r), r["note"]] for r in rows]))
    path = write_results("dali", {"quick": args.quick, "samples": count, "sample_bytes": SAMPLE_BYTES,
                                  "batch": BATCH, "crop": CROP, "repeats": repeats, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
