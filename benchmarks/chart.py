"""The PNG chart (matplotlib, in the ``bench`` extra): one panel per view of the run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .targets import FLAT, HIT

COLOURS = {"bg": "#1f77b4", "authlib": "#d62728", "other": "#7f7f7f", "floor": "#2ca02c"}


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _colour(name: str) -> str:
    if name == "floor":
        return COLOURS["floor"]
    if ".bg." in name:
        return COLOURS["bg"]
    return COLOURS["authlib"] if "authlib" in name else COLOURS["other"]


def write(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {g["name"]: g for g in doc["groups"]}
    growth = [g for g in doc["groups"] if g["name"] != "main"]
    load = doc.get("load") or {}
    panels = 1 + len(growth) + (1 if load.get("phases") else 0)
    fig = plt.figure(figsize=(14, 5 + 3.2 * ((panels - 1 + 1) // 2)))
    grid = fig.add_gridspec(
        1 + (panels - 1 + 1) // 2, 2, height_ratios=[3] + [1.4] * ((panels - 1 + 1) // 2)
    )
    if "main" in groups:
        _bars(fig.add_subplot(grid[0, :]), groups["main"])
    slots = [grid[1 + i // 2, i % 2] for i in range(panels - 1)]
    for slot, group in zip(slots, growth, strict=False):
        _curve(fig.add_subplot(slot), group)
    if load.get("phases"):
        _load(fig.add_subplot(slots[len(growth)]), load)
    meta = doc["meta"]
    fig.suptitle(
        f"bearerguard benchmarks ({meta['profile']}, {meta['started']}, "
        f"{meta['python']}, {meta['cpus']} CPUs)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax: Any, group: dict[str, Any]) -> None:
    rows = [r for r in group["cases"] if r["x_floor"] is not None]
    names = [r["name"] for r in rows]
    values = [r["x_floor"] for r in rows]
    ax.barh(range(len(rows)), values, color=[_colour(n) for n in names])
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(HIT, color="black", linestyle="--", linewidth=0.8, label=f"hit goal {HIT:.2f}x")
    limit = next((r["x_floor"] for r in rows if r["name"] == "floor.digest-lookup"), None)
    if limit is not None:  # the least a hit can cost, measured in the same run
        label = f"floor + SHA-256 + lookup {limit:.2f}x"
        ax.axvline(limit, color="black", linestyle=":", linewidth=0.8, label=label)
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:.2f}x", va="center", fontsize=6)
    ax.set_xlabel("cost per request / floor (median of per-round ratios, log scale)")
    ax.set_title(group["title"], fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _curve(ax: Any, group: dict[str, Any]) -> None:
    rows = [r for r in group["cases"] if r["x_floor"] is not None]
    values = [r["x_floor"] for r in rows]
    ax.bar(range(len(rows)), values, color=[_colour(r["name"]) for r in rows])
    ax.set_xticks(
        range(len(rows)),
        [r["name"].removeprefix("growth.") for r in rows],
        rotation=20,
        fontsize=6,
        ha="right",
    )
    for i, value in enumerate(values):
        ax.text(i, value, f"{value:.2f}x", ha="center", va="bottom", fontsize=6)
    smallest = next((r["x_floor"] for r in rows if r["name"] != "floor"), None)
    if smallest is not None:  # issue 15: the largest within 5 % of the smallest
        low, high = smallest * (1 - FLAT), smallest * (1 + FLAT)
        ax.axhspan(low, high, color="black", alpha=0.08, label="±5 % of the smallest")
        ax.legend(fontsize=6, loc="upper left")
    ax.set_ylabel("x floor", fontsize=7)
    if max(values, default=1) > 20 * min(values, default=1):
        ax.set_yscale("log")
    ax.set_title(group["title"], fontsize=9)


def _load(ax: Any, load: dict[str, Any]) -> None:
    phases = list(load["phases"].items())
    ax.bar(range(len(phases)), [p["rps"] for _, p in phases], color="#9467bd")
    ax.set_xticks(range(len(phases)), [n for n, _ in phases], fontsize=7)
    ax.set_ylabel("req/s", fontsize=7)
    twin = ax.twinx()
    twin.plot(range(len(phases)), [p["p99_ms"] for _, p in phases], "ko-", label="p99 ms")
    twin.set_ylabel("p99 ms", fontsize=7)
    ax.set_title(
        f"gunicorn {load['workers']}x{load['threads']}, client {load['client']}", fontsize=9
    )
