"""Command line and orchestration: build the groups, measure, report, write files."""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    asgi,
    cases_introspection,
    cases_jwt,
    cases_limits,
    cases_opaque,
    chart,
    growth,
    load,
    memory,
    report,
)
from .apps import make_app
from .config import PROFILES, Context, profile
from .harness import Case, Feed, Group, Skip, progress, run_group, time_batch

RESULTS = Path(__file__).parent / "results"
SECTIONS = ("main", "asgi", "growth", "memory", "load")


def parse(argv: list[str] | None) -> argparse.Namespace:
    package_doc = sys.modules[__package__ or "benchmarks"].__doc__
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=package_doc)
    parser.add_argument("--quick", action="store_true", help="a short run (the 'quick' profile)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), help="sizes and rounds (default: default)"
    )
    parser.add_argument("--rounds", type=int, help="measured rounds per group")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset of: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--only", help="regex: measure only matching cases (floors always run)")
    parser.add_argument("--load-client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--load-app",
        default=load.GUNICORN_APP,
        help="gunicorn app spec (examples/ is on its path; the limit phase: ours only)",
    )
    parser.add_argument("--load-seconds", type=float, help="seconds per load phase")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--cprofile", metavar="CASE", help="profile one main case and exit")
    return parser.parse_args(argv)


def floor_case() -> Case:
    """No protection; the request still carries a bearer header, as the others do."""
    return Case("floor", _FLOOR_APP, Feed(["floor-token-not-checked"]), target="floor")


_FLOOR_APP = make_app("floor")


def build_main(ctx: Context) -> Group:
    group = Group("main", "in-process, per request through the Flask WSGI app", floor_case())
    for module in (cases_limits, cases_jwt, cases_opaque, cases_introspection):
        started = time.perf_counter()
        module.build(ctx, group)
        progress(
            f"  built {module.__name__.split('.')[-1]} in {time.perf_counter() - started:.1f}s"
        )
    return group


def growth_groups(ctx: Context) -> list[Callable[[], Group]]:
    # Largest heap last: the 1M-entry cache would slow every collection after it.
    return [
        lambda: growth.issuers_group(ctx, floor_case()),
        lambda: growth.jwks_group(ctx, floor_case()),
        lambda: growth.cache_size_group(ctx, floor_case()),
    ]


def select(group: Group, only: str | None) -> Group:
    if only:
        pattern = re.compile(only)
        group.cases = [c for c in group.cases if pattern.search(c.name)]
        group.skipped = [s for s in group.skipped if pattern.search(s.name)]
    return group


def measure(ctx: Context, group: Group, rounds: int | None = None) -> None:
    p = ctx.profile
    run_group(
        group,
        rounds=rounds or p.rounds,
        warmup=p.warmup,
        batch_ns=p.batch_ms * 1e6,
        batch_bounds=p.batch_bounds,
        log=progress,
    )


def release(group: Group) -> None:
    """Drop the apps (and their caches) once measured; keep the numbers."""
    for case in group.all_cases():
        case.app = _FLOOR_APP
        case.feed = Feed(["released"])
    gc.collect()


def profile_case(ctx: Context, name: str, requests: int = 3000) -> int:
    group = build_main(ctx)
    case = next((c for c in group.all_cases() if c.name == name), None)
    if case is None:
        names = ", ".join(c.name for c in group.all_cases())
        progress(f"no case {name!r}; cases: {names}")
        return 2
    time_batch(case.app, case.feed.take(50), str(case.expected))
    environs = case.feed.take(requests)
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed, bad, seen = time_batch(case.app, environs, str(case.expected))
    profiler.disable()
    each = elapsed / requests / 1000
    print(f"{name}: {requests} requests, {each:.1f} us each under cProfile; {bad} bad {seen}")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    name = args.profile or ("quick" if args.quick else "default")
    ctx = Context(profile(name, rounds=args.rounds, load_seconds=args.load_seconds))
    sections = set(args.sections.split(","))
    meta = report.machine()
    started = time.strftime("%Y%m%d-%H%M%S")
    meta.update(profile=name, started=started, rounds=ctx.profile.rounds, warmup=ctx.profile.warmup)
    groups: list[Group] = []
    extra: dict[str, Any] = {"profile": vars(ctx.profile)}
    wall = time.monotonic()
    try:
        if args.cprofile:
            return profile_case(ctx, args.cprofile)
        if "main" in sections:
            progress("main group: building")
            group = select(build_main(ctx), args.only)
            measure(ctx, group)
            groups.append(group)
        if "asgi" in sections:
            progress("asgi: Starlette and FastAPI apps in-process, against their bare floors")
            extra["asgi"] = asgi.measure(ctx.profile.rounds, ctx.profile.warmup)
        if "growth" in sections:
            for make in growth_groups(ctx):
                group = select(make(), args.only)
                if group.cases:
                    progress(f"{group.name} group: measuring")
                    # Growth groups are short: twice the rounds, for flatter medians.
                    measure(ctx, group, rounds=2 * ctx.profile.rounds)
                groups.append(group)
                release(group)
        if "memory" in sections:
            progress("memory per cached token: JWT and opaque, each in a fresh interpreter")
            extra["memory"] = memory.measure_all(ctx)
        if "load" in sections:
            try:
                extra["load"] = load.run(ctx, args.load_app, args.load_client, progress)
            except Skip as skip:
                progress(f"load run skipped: {skip.reason}")
                extra["load"] = {"skipped": skip.reason, "kind": skip.kind}
            try:
                extra["load_uvicorn"] = load.run(
                    ctx, args.load_app, args.load_client, progress, server="uvicorn"
                )
            except Skip as skip:
                progress(f"uvicorn load run skipped: {skip.reason}")
                extra["load_uvicorn"] = {"skipped": skip.reason, "kind": skip.kind}
    finally:
        ctx.close()
    meta["loadavg_end"] = list(os.getloadavg())
    meta["seconds"] = round(time.monotonic() - wall, 1)
    doc = report.document(meta, groups, extra)
    print(report.header(meta))
    print(report.table(doc))
    if "asgi" in extra:
        print("\n" + asgi.table(extra["asgi"]))
    print(report.goals_text(doc))
    return write(doc, args, started)


def write(doc: dict[str, Any], args: argparse.Namespace, stamp: str) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(doc, indent=2, default=str))
    written = [str(path)]
    if not args.no_chart:
        if chart.available():
            chart.write(doc, path.with_suffix(".png"))
            written.append(str(path.with_suffix(".png")))
        else:
            progress("no chart: matplotlib is not installed (the bench extra)")
    print(f"\nwrote {', '.join(written)} in {doc['meta']['seconds']}s")
    failed = [c["name"] for g in doc["groups"] for c in g["cases"] if c["error"]]
    load_error = [
        f"{key}.{n}"
        for key in ("load", "load_uvicorn")
        for n, p in (doc.get(key) or {}).get("phases", {}).items()
        if p.get("error")
    ]
    if failed or load_error:
        print(f"FAILED cases: {', '.join(failed + load_error)}", file=sys.stderr)
        return 1
    return 0
