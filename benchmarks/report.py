"""The run's results: the header, the tables, the JSON document."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from typing import Any

from . import targets
from .harness import Case, Group, by_name, median_us, ratio, spread
from .targets import TARGETS

PACKAGES = (
    "bearerguard", "flask", "werkzeug", "authlib", "joserfc", "pyjwt", "cryptography",
    "cachetools", "sqlalchemy", "flask-sqlalchemy", "flask-jwt-extended", "psycopg",
    "redis", "gunicorn", "requests",
)  # fmt: skip


def machine() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        versions["wrk"] = (
            (out.stdout or out.stderr).split()[1] if (out.stdout or out.stderr) else "?"
        )
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": list(os.getloadavg()),
        "versions": versions,
    }


def header(meta: dict[str, Any]) -> str:
    load = " ".join(f"{x:.2f}" for x in meta["loadavg_start"])
    end = meta.get("loadavg_end")
    if end:
        load += " -> " + " ".join(f"{x:.2f}" for x in end)
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines = [
        f"bearerguard benchmarks: profile {meta['profile']}, {meta['started']}, "
        f"{meta['rounds']} rounds (+{meta['warmup']} warm-up), medians per request",
        f"{meta['python']} on {meta['platform']}; {meta['cpus']} CPUs; load average {load}",
        f"versions: {versions}",
        "xfloor: median over rounds of (case batch / the floor batches timed just before and"
        " after it); +-%: half the IQR of those per-round ratios",
    ]
    busiest = max([*meta["loadavg_start"][:1], *(end or [])[:1]])
    if meta["cpus"] and busiest > meta["cpus"]:
        lines.append(
            f"WARNING: load average {busiest:.1f} > {meta['cpus']} CPUs: other processes"
            " compete; paired ratios hold up, absolute us and the load run do not"
        )
    return "\n".join(lines)


# -- per case -------------------------------------------------------------------------


def case_row(case: Case, group: Group, cases: dict[str, Case]) -> dict[str, Any]:
    med = median_us(case)
    is_floor = case is group.floor
    x_floor = 1.0 if is_floor else ratio(case)
    base = cases.get(case.authlib) if case.authlib else None
    x_authlib = ratio(case, base) if base is not None else None
    # A case in an app with extensions (Flask-SQLAlchemy) is judged against a
    # floor app with the same extensions, when the case names one.
    judge = cases.get(case.floor) if case.floor else None
    x_judged = ratio(case, judge) if judge is not None else x_floor
    target = TARGETS.get("floor" if is_floor else case.target or "")
    value = med if target is not None and target.unit == "us" else x_judged
    text = target.text if target else ""
    if target and judge is not None:
        text += f" {judge.name}"
    return {
        "name": case.name,
        "median_us": med,
        "spread": spread(case),
        "x_floor": x_floor,
        "x_authlib": x_authlib,
        "authlib": case.authlib,
        "judged_against": judge.name if judge is not None else "floor",
        "x_judged": x_judged,
        "rps": 1e6 / med if med else None,
        "target": "floor" if is_floor else case.target,
        "target_text": text,
        "verdict": target.verdict(value) if target and value is not None else "-",
        "met": target.met(value) if target else None,
        "batch": case.batch,
        "rounds": group.rounds if is_floor else len(case.samples_ns),
        "batches": len(case.samples_ns),
        "samples_us": [round(x / 1000, 3) for x in case.samples_ns],
        "paired_floor_us": [round(x / 1000, 3) for x in case.paired_ns],
        "statuses": case.statuses,
        "expected": case.expected,
        "error": case.error,
    }


def flatness(group: Group) -> dict[str, Any] | None:
    """The largest over the smallest of a growth curve's bearerguard cases."""
    series = [c for c in group.cases if ".bg." in c.name and c.samples_ns and c.error is None]
    if len(series) < 2:
        return None
    value = ratio(series[-1], series[0])
    ok = value is not None and abs(value - 1) <= targets.FLAT
    return {"from": series[0].name, "to": series[-1].name, "ratio": value, "met": ok}


def group_doc(group: Group, cases: dict[str, Case]) -> dict[str, Any]:
    return {
        "name": group.name,
        "title": group.title,
        "rounds": group.rounds,
        "notes": group.notes,
        "cases": [case_row(c, group, cases) for c in group.all_cases()],
        "skipped": [vars(s) for s in group.skipped],
        "flatness": flatness(group) if group.name != "main" else None,
    }


def document(meta: dict[str, Any], groups: list[Group], extra: dict[str, Any]) -> dict[str, Any]:
    cases = by_name(groups)
    doc = {"meta": meta, "groups": [group_doc(g, cases) for g in groups], **extra}
    doc["goals"] = goals(doc)
    return doc


def goals(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Every target of issue 15 checked in this run: met, missed (or not measured)."""
    doc["targets"] = rows = targets.evaluate(doc)
    met = [_target_line(r) for r in rows if r["met"] is True]
    missed = [_target_line(r) for r in rows if r["met"] is False]
    return {"met": met, "missed": missed}


def _value(row: dict[str, Any]) -> str:
    value, unit = row["value"], row["unit"]
    if value is None:
        return "-"
    return {"x": f"{value:.3f}x", "us": f"{value:.1f} us", "B": f"{value:.0f} B"}[unit]


def _target_line(row: dict[str, Any]) -> str:
    return f"{row['target']}: {_value(row)} ({row['goal']})"


# -- text -------------------------------------------------------------------------------

#: (title, width); a negative width left-aligns.
CASE_COLUMNS = (
    ("case", -40), ("median us", 10), ("+-%", 5), ("xfloor", 7), ("xAuthlib", 8),
    ("req/s", 8), ("target", -20), ("met", -8),
)  # fmt: skip
MEMORY_COLUMNS = (
    ("kind", -8), ("entries", 8), ("tracemalloc B", 14), ("RSS B", 8), ("target", -9),
    ("met", -4), ("note", -1),
)  # fmt: skip
LOAD_COLUMNS = (
    ("phase", -22), ("req/s", 8), ("p50 ms", 7), ("p99 ms", 7), ("xthroughput", 11),
    ("xp99", 6), ("statuses", -1),
)  # fmt: skip


def _line(columns: tuple[tuple[str, int], ...], cells: list[str]) -> str:
    parts = []
    for (_, width), cell in zip(columns, cells, strict=True):
        parts.append(cell.ljust(-width) if width < 0 else cell.rjust(width))
    return " ".join(parts).rstrip()


def _head(columns: tuple[tuple[str, int], ...]) -> list[str]:
    head = _line(columns, [title for title, _ in columns])
    return [head, "-" * len(head)]


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _n(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def table(doc: dict[str, Any]) -> str:
    out: list[str] = []
    for group in doc["groups"]:
        out += ["", f"== {group['title']} ({group['rounds']} rounds)", *_head(CASE_COLUMNS)]
        for row in group["cases"]:
            if row["error"] and row["median_us"] is None:
                out.append(f"{row['name']:<40} FAILED: {row['error']}")
                continue
            noise = row["spread"] * 100 if row["spread"] is not None else None
            cells = [
                row["name"], _n(row["median_us"], ".1f"), _n(noise, ".1f"), _x(row["x_floor"]),
                _x(row["x_authlib"]), _n(row["rps"], ",.0f"), row["target_text"], row["verdict"],
            ]  # fmt: skip
            out.append(_line(CASE_COLUMNS, cells))
            if row["error"]:
                out.append(f"{'':<40} ^ FAILED: {row['error']}")
        for skipped in group["skipped"]:
            out.append(f"{skipped['name']:<40} skipped ({skipped['kind']}): {skipped['reason']}")
        flat = group.get("flatness")
        if flat:
            cells = ["  flatness: last / first", "", "", _x(flat["ratio"]), "", "", "within +-5%"]
            out.append(_line(CASE_COLUMNS, [*cells, _yes(flat["met"])]))
        out += [f"  {note}" for note in group["notes"]]
    out += memory_table(doc.get("memory", [])) + load_table(doc.get("load"))
    out += load_table(doc.get("load_uvicorn"))
    return "\n".join(out)


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["", "== memory per cached token", *_head(MEMORY_COLUMNS)]
    for row in rows:
        jwt = row["kind"] == "jwt"
        worst = max(row["traced_per_entry"], row["rss_per_entry"])
        cells = [
            row["kind"], str(row["entries"]), f"{row['traced_per_entry']:.0f}",
            f"{row['rss_per_entry']:.0f}", "<= 1 KiB" if jwt else "",
            _yes(worst <= targets.MEMORY_PER_JWT) if jwt else "-", row["note"],
        ]  # fmt: skip
        out.append(_line(MEMORY_COLUMNS, cells))
    return out


def load_table(load: dict[str, Any] | None) -> list[str]:
    if not load:
        return []
    if "skipped" in load:
        return ["", f"== load: skipped ({load['kind']}): {load['skipped']}"]
    server = load.get("server", "gunicorn")
    threads = f" x {load['threads']} threads" if server == "gunicorn" else ""
    title = (
        f"== {server} load ({load['workers']} workers{threads}, "
        f"{load['connections']} keep-alive connections, client {load['client']}, "
        f"{load['rounds']} rounds; x: median of per-round ratios to the floor)"
    )
    out = ["", title, *_head(LOAD_COLUMNS)]
    per_phase = (load.get("summary") or {}).get("per_phase", {})
    for name, row in load["phases"].items():
        ratios = per_phase.get(name, {})
        xt, xp = ratios.get("throughput"), ratios.get("p99")
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(row["statuses"].items()))
        if row.get("capped"):
            statuses += "  (request cap reached: req/s is a lower bound)"
        if row.get("error"):
            statuses += f"  FAILED: {row['error']}"
        cells = [
            name, f"{row['rps']:,.0f}", f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
            _x(xt), _x(xp), statuses,
        ]  # fmt: skip
        out.append(_line(LOAD_COLUMNS, cells))
    summary = load.get("summary") or {}
    if summary.get("throughput_ratio") is not None:
        t, p = summary["throughput_ratio"], summary["p99_ratio"]
        throughput, p99 = _yes(t >= targets.LOAD_THROUGHPUT), _yes(p <= targets.LOAD_P99)
        out.append(
            f"  protected vs floor: throughput {t:.2f}x (>= {targets.LOAD_THROUGHPUT}: "
            f"{throughput}), p99 {p:.2f}x (<= {targets.LOAD_P99}: {p99})"
        )
    return out


def goals_text(doc: dict[str, Any]) -> str:
    """The one table of issue 15's targets: measured, goal, met or missed."""
    g, rows = doc["goals"], doc.get("targets", [])
    width = max([len(r["target"]) for r in rows] + [6])
    head = f"{'target':<{width}} {'measured':>12} {'goal':>12}  verdict"
    lines = ["", f"== goals: {len(g['met'])} met, {len(g['missed'])} missed", head, "-" * len(head)]
    for row in rows:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        if row["goal"] == "-":
            verdict = ""
        lines.append(f"{row['target']:<{width}} {_value(row):>12} {row['goal']:>12}  {verdict}")
    return "\n".join(lines)
