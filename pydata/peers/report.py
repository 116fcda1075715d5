"""The peers benchmark's outputs: a JSON file with the environment, a markdown table and a PNG
chart of samples/s relative to the fastest peer of each (workload, setting).

Ratios are computed once here (:func:`add_ratios`) so that the table, the chart and the JSON
agree. matplotlib is imported only to draw the chart (the ``bench`` extra); without it the chart
is skipped and the table says why.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["add_ratios", "environment", "markdown", "write_chart", "write_outputs"]

_PACKAGES = ("pydata", "torch", "numpy", "mosaicml-streaming", "litdata", "webdataset", "nvidia-dali-cuda120",
             "moto", "boto3", "s3fs", "fsspec", "matplotlib")
_COLUMNS = ("workload", "setting", "system", "variant", "status", "samples/s", "MB/s", "spread",
            "first batch (s)", "CPU s / 1k samples", "RSS main (MB)", "USS main (MB)", "RSS workers (MB)",
            "USS workers (MB)", "convert (s)", "disk (MB)", "x fastest peer", "x np.memmap batched")


def environment() -> dict[str, Any]:
    """Versions, cores and memory: what a result depends on."""
    import pydata

    versions: dict[str, str | None] = {"pydata": pydata.__version__}
    for name in _PACKAGES[1:]:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "versions": versions, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _best(rows: Sequence[dict[str, Any]], family: str | None = None, key: str | None = None) -> float | None:
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r and r.get("status") == "ok"
             and (family is None or r["family"] == family) and (key is None or r["key"] == key)]
    return max(rates, default=None)


def add_ratios(results: dict[str, Any]) -> None:
    """Adds ``x_fastest_peer`` and ``x_memmap_batched`` to every measured row, per (workload, setting)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results["rows"]:
        groups.setdefault((row["workload"], row["setting"]), []).append(row)
    for rows in groups.values():
        peer, memmap = _best(rows, family="peer"), _best(rows, key="memmap-batched")
        for row in rows:
            rate = row.get("samples_per_s") if row.get("status") == "ok" else None
            row["x_fastest_peer"] = rate / peer if rate and peer else None
            row["x_memmap_batched"] = rate / memmap if rate and memmap else None


def _cell(value: Any, digits: str = ",.0f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, digits)
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    """Every row (the unavailable systems included, with the reason) and the ceilings, as markdown."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for r in results["rows"]:
        cells = [r["workload"], r["setting"], r["system"], r["variant"], r["status"],
                 _cell(r.get("samples_per_s")), _cell(r.get("mb_per_s")), _cell(r.get("spread"), ".2f"),
                 _cell(r.get("first_batch_s"), ".3f"), _cell(r.get("cpu_s_per_1k"), ".3f"),
                 _cell(r.get("peak_rss_main_mb")), _cell(r.get("peak_uss_main_mb")),
                 _cell(r.get("peak_rss_workers_mb")), _cell(r.get("peak_uss_workers_mb")),
                 _cell(r.get("conversion_s"), ".1f"), _cell(r.get("disk_mb")),
                 _cell(r.get("x_fastest_peer"), ".2f"), _cell(r.get("x_memmap_batched"), ".2f")]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    for s in results["systems"]:
        if s["status"] != "ok":
            blank = ["—"] * (len(_COLUMNS) - 5)
            lines.append("| " + " | ".join(["all", "all", s["name"], "—", s["status"].replace("|", "/"), *blank]) + " |")
    lines += ["", "| workload | setting | ceiling | samples/s | MB/s |", "|---|---|---|---|---|"]
    for c in results["ceilings"]:
        lines.append(f"| {c['workload']} | {c['setting']} | {c['ceiling']} | {_cell(c.get('samples_per_s'))} "
                     f"| {_cell(c.get('mb_per_s'))} |")
    notes = sorted({n for r in results["rows"] for n in r.get("notes", [])}
                   | {n for s in results["systems"] for n in s.get("notes", [])})
    lines += ["", *[f"- {n}" for n in results.get("method", []) + notes]]
    return "\n".join(lines)


def write_chart(results: dict[str, Any], path: Path) -> str:
    """Draws samples/s of each system's best variant relative to the fastest peer of each
    (workload, setting), or to the fastest system where no peer ran; returns "" or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: matplotlib is not installed (the bench extra): {exc}"
    groups = sorted({(r["workload"], r["setting"]) for r in results["rows"]})
    systems = sorted({r["system"] for r in results["rows"]})
    family = {r["system"]: r.get("family", "") for r in results["rows"]}
    colors = [plt.get_cmap("tab20")(k) for k in range(20)]  # one distinct color per system
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 5.5))
    width = 0.8 / max(len(systems), 1)
    for i, name in enumerate(systems):
        heights = []
        for group in groups:
            rows = [r for r in results["rows"] if (r["workload"], r["setting"]) == group]
            base = _best(rows, family="peer") or _best(rows) or 1.0
            heights.append((_best([r for r in rows if r["system"] == name]) or 0.0) / base)
        ax.bar([g + i * width for g in range(len(groups))], heights, width, label=name,
               color=colors[i % len(colors)], edgecolor="black", linewidth=0.3,
               hatch="//" if family.get(name) == "pydata" else None)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], [f"{w}\n{s}" for w, s in groups])
    ax.set_ylabel("x the fastest peer (log scale)")
    ax.set_title("samples/s of each system's best variant, relative to the fastest peer "
                 "(the fastest system where no peer ran); pydata hatched", fontsize=9)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return ""


def write_outputs(results: dict[str, Any], out: Path, name: str = "peers") -> dict[str, Path]:
    """Writes ``<name>.json`` (with the environment), ``<name>.md`` and ``<name>.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    add_ratios(results)
    results = {"environment": environment(), **results}
    paths = {"json": out / f"{name}.json", "markdown": out / f"{name}.md", "chart": out / f"{name}.png"}
    chart = write_chart(results, paths["chart"])
    if chart:
        results.setdefault("method", []).append(chart)
        del paths["chart"]
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["markdown"].write_text(markdown(results) + "\n")
    return paths
