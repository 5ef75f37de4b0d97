"""Real HTTP load: the example app under gunicorn, driven over keep-alive sockets.

gunicorn runs the demo (``examples/demo.py``, through :mod:`.gunicorn_load_app`)
with 2 workers and threads on 127.0.0.1. The load generator is wrk when
installed (Debian's package), else the bundled client in
:mod:`benchmarks.loadclient`. Every phase is bounded by
time and by request count, and the server is killed in a ``finally``.

Phases: the floor endpoint ``/hello``; ``/hello/protected`` with the warm set
of ``load-NNNN`` tokens (after an unrecorded warm-up that puts them in both
workers' caches); ``/hello/limit``, the least a protected view can do
(:mod:`.load_limit`), when the app is one of ours; and the protected one with
10 % of requests carrying unknown tokens.
"""

from __future__ import annotations

import http.client
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import load_limit, loadclient
from .config import Context
from .harness import Skip

WORKERS, THREADS = 2, 4
UVICORN_APP = "benchmarks.asgi_load_app:app"
GUNICORN_APP = "benchmarks.gunicorn_load_app:create_app()"
#: The apps that serve the limit phase's /hello/limit (another --load-app need not).
LIMIT_APPS = (GUNICORN_APP, UVICORN_APP)
#: One uvicorn process: with --workers 2 (uvicorn 0.54, h11) every request on
#: this machine took ~44 ms, floor and protected alike (a delayed-ACK stall),
#: which measures nothing; one worker answers in ~2 ms at 16 connections.
UVICORN_WORKERS = 1
#: On the app's path: the demo lives there, outside the package.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
UNKNOWN_SHARE = 0.10


@dataclass
class Phase:
    name: str
    path: str
    tokens: int
    unknown: float
    expected: dict[str, float]  # status -> expected share (approximate for unknown tokens)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)

    def check(self) -> str | None:
        """None when every status is one this phase expects, in about its share."""
        statuses = self.result.get("statuses", {})
        total = sum(statuses.values())
        if not total:
            return "no responses"
        errors = self.result.get("socket_errors", 0)
        if errors:
            return f"{errors} socket errors"
        for status, count in statuses.items():
            share = self.expected.get(status)
            if share is None:
                return f"{count} responses with status {status}"
            if share < 1 and abs(count / total - share) > max(0.05, 3 / total**0.5):
                return f"status {status} share {count / total:.2f}, expected ~{share:.2f}"
        return None


def phases(warm_tokens: int, limit: bool = True) -> list[Phase]:
    known = 1 - UNKNOWN_SHARE
    # The floor sends the same Authorization headers, to a view that ignores them.
    plan = [
        Phase("floor", "/hello", warm_tokens, 0.0, {"200": 1.0}),
        Phase("protected", "/hello/protected", warm_tokens, 0.0, {"200": 1.0}),
    ]
    if limit:
        plan.append(Phase("limit", load_limit.PATH, warm_tokens, 0.0, {"200": 1.0}))
    return [
        *plan,
        Phase(
            "protected+10%unknown",
            "/hello/protected",
            warm_tokens,
            UNKNOWN_SHARE,
            {"200": known, "401": UNKNOWN_SHARE},
        ),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}): {log.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/hello")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready after {timeout}s: {log.read_text()[-2000:]}")


def start_server(
    ctx: Context, app_spec: str, port: int, server: str = "gunicorn"
) -> tuple[subprocess.Popen[bytes], Path]:
    env = dict(os.environ)
    env.update(
        BEARERGUARD_DEMO_DB=f"sqlite:///{ctx.tmp}/load.db",
        BEARERGUARD_DEMO_TOKENS=str(ctx.profile.load_warm_tokens),
    )
    env.pop("BEARERGUARD_REDIS_URL", None)
    # The project's root (the load apps are modules of this package) and examples/.
    paths = [str(EXAMPLES.parent), str(EXAMPLES), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    log = Path(ctx.tmp) / f"{server}.log"
    if server == "uvicorn":
        command = [
            sys.executable, "-m", "uvicorn", "--workers", str(UVICORN_WORKERS),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log", "--timeout-keep-alive", "30", UVICORN_APP,
        ]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return proc, log
    # Create and seed the database once, before the workers start: two workers
    # creating the tables of a fresh SQLite file at once can race, and the
    # loser's failed CREATE TABLE stops the whole server.
    module, _, factory = app_spec.partition(":")
    seed = f"import {module} as m; m.{factory}"
    subprocess.run(
        [sys.executable, "-c", seed], env=env, check=True, capture_output=True, timeout=120
    )
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(WORKERS), "--threads", str(THREADS),
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "--graceful-timeout", "3", "--keep-alive", "30",
        app_spec,
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # gunicorn's master stops its workers on SIGTERM
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session started for this server only
        proc.wait(5)


def _importable(module: str) -> bool:
    """True when ``module`` is found on the path the server gets (examples/ first)."""
    top = module.split(".")[0]
    if importlib.machinery.PathFinder.find_spec(top, [str(EXAMPLES), *sys.path]) is None:
        return False
    return "." not in module or importlib.util.find_spec(module) is not None


def pick_client(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise Skip("wrk is not installed (apt-get install wrk)", "package")
    return choice


def run(
    ctx: Context, app_spec: str, client: str, log: Any, server: str = "gunicorn"
) -> dict[str, Any]:
    """Start the server, run the phases round by round, stop it; results as a dict.

    Each round runs every phase once (floor, protected, protected with unknown
    tokens; the first two swapped every other round), so a slow spell on the
    machine hits all phases alike; ratios to the floor are taken per round,
    then the median.
    """
    module = app_spec.split(":", 1)[0]
    if server == "gunicorn" and not _importable(module):
        raise Skip(f"{module} has not landed (the load run needs its create_app())", "stub")
    if importlib.util.find_spec(server) is None:
        raise Skip(f"{server} is not installed", "package")
    client = pick_client(client)
    profile = ctx.profile
    port = free_port()
    proc, server_log = start_server(ctx, app_spec, port, server)
    plan = phases(
        profile.load_warm_tokens, (app_spec if server == "gunicorn" else UVICORN_APP) in LIMIT_APPS
    )
    try:
        _wait_ready(proc, port, server_log)
        drive = loadclient.wrk if client == "wrk" else loadclient.python_client
        seconds, connections, tmp = profile.load_seconds, profile.load_connections, Path(ctx.tmp)

        def go(path: str, tokens: int, unknown: float, cap: int) -> dict[str, Any]:
            return drive(port, path, tokens, unknown, seconds, cap, connections, tmp)

        shape = f"{WORKERS} workers x {THREADS} threads" if server == "gunicorn" else "1 worker"
        log(f"  load: {server} {shape} on :{port}, client {client}")
        # Warm-up, not recorded: each token sent ~12 times over random keep-alive
        # connections reaches both workers' caches (all but ~0.05 %). The bundled
        # client stops at the count (wrk would sit out its whole duration).
        warm = profile.load_warm_tokens
        started = time.monotonic()
        loadclient.python_client(port, plan[1].path, warm, 0.0, 60.0, warm * 12, connections, tmp)
        log(f"  load: warmed {warm} tokens in {time.monotonic() - started:.1f}s")
        for round_no in range(profile.load_rounds):
            # The phases of known tokens run backwards every other round: in a
            # fixed order the floor alone would always follow the last round's
            # unknown-token phase (its misses' threads and garbage).
            known = [p for p in plan if not p.unknown]
            order = (known if round_no % 2 == 0 else known[::-1]) + plan[len(known) :]
            for phase in order:
                phase.rounds.append(
                    go(phase.path, phase.tokens, phase.unknown, profile.load_requests)
                )
            done = ", ".join(
                f"{p.name} {p.rounds[-1]['rps']:.0f} req/s p99 {p.rounds[-1]['p99_ms']:.1f} ms"
                for p in plan
            )
            log(f"  load round {round_no + 1}/{profile.load_rounds}: {done}")
    finally:
        stop_server(proc)
    for phase in plan:
        phase.result = combine(phase.rounds)
        phase.result["error"] = phase.check()
    return {
        "client": client,
        "server": server,
        "app": app_spec if server == "gunicorn" else UVICORN_APP,
        "workers": WORKERS if server == "gunicorn" else UVICORN_WORKERS,
        "threads": THREADS,
        "connections": profile.load_connections,
        "rounds": profile.load_rounds,
        "phases": {p.name: p.result for p in plan},
        "summary": summary(plan),
        "server_log_tail": server_log.read_text()[-1000:],
    }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One phase over its rounds: totals, and the median round's latencies."""
    statuses: dict[str, int] = {}
    for r in rounds:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "statuses": statuses,
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "capped": any(r["capped"] for r in rounds),
        "rounds": rounds,
    }


def summary(plan: list[Phase]) -> dict[str, Any]:
    """Each phase over the floor, per round then the median: throughput and p99."""
    floor = next(p.rounds for p in plan if p.name == "floor")
    ratios: dict[str, dict[str, float]] = {}
    for phase in plan:
        pairs = [
            (f, p) for f, p in zip(floor, phase.rounds, strict=True) if f["rps"] and f["p99_ms"]
        ]
        if pairs:
            ratios[phase.name] = {
                "throughput": statistics.median(p["rps"] / f["rps"] for f, p in pairs),
                "p99": statistics.median(p["p99_ms"] / f["p99_ms"] for f, p in pairs),
            }
    protected, limit = ratios.get("protected", {}), ratios.get("limit", {})
    return {
        "throughput_ratio": protected.get("throughput"),
        "p99_ratio": protected.get("p99"),
        "limit_throughput_ratio": limit.get("throughput"),
        "limit_p99_ratio": limit.get("p99"),
        "per_phase": ratios,
    }
