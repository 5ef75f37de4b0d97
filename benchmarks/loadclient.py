"""Load generators: wrk with a generated Lua script, or a bundled Python client.

Both keep connections alive, send ``Bearer load-NNNN`` tokens picked at random
(and, for a share of requests, a random unknown token), stop after a time or a
request count, whichever comes first, and return the same summary: requests,
seconds, req/s, p50/p99 latency, status counts and socket errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import random
import secrets
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

WRK_THREADS = 2

_LUA = """
local path = "%(path)s"
local unknown = %(unknown)f
local limit = %(limit)d
local tokens = {}
for i = 0, %(tokens)d - 1 do tokens[#tokens + 1] = string.format("load-%%04d", i) end
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  count, ok, unauth, other = 0, 0, 0, 0
  math.randomseed(os.time() * 97 + id)
end

local function unknown_token()
  local t = {}
  for i = 1, 32 do
    local n = math.random(#chars)
    t[i] = chars:sub(n, n)
  end
  return "unknown-" .. table.concat(t)
end

function request()
  if #tokens == 0 then
    return wrk.format("GET", path)
  end
  local token
  if unknown > 0 and math.random() < unknown then
    token = unknown_token()
  else
    token = tokens[math.random(#tokens)]
  end
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end

function response(status, headers, body)
  count = count + 1
  if status == 200 then ok = ok + 1 elseif status == 401 then unauth = unauth + 1
  else other = other + 1 end
  if count >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local s200, s401, sother = 0, 0, 0
  for _, t in ipairs(threads) do
    s200 = s200 + t:get("ok")
    s401 = s401 + t:get("unauth")
    sother = sother + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d, "200": %%d, "401": %%d, "other": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, s200, s401, sother))
end
"""


def wrk(
    port: int,
    path: str,
    tokens: int,
    unknown: float,
    seconds: float,
    max_requests: int,
    connections: int,
    tmp: Path,
) -> dict[str, Any]:
    script = tmp / "load.lua"
    limit = max(1, max_requests // WRK_THREADS)
    script.write_text(_LUA % {"path": path, "unknown": unknown, "limit": limit, "tokens": tokens})
    duration = max(1, round(seconds))
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{max(connections, WRK_THREADS)}", f"-d{duration}s",
        "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCHJSON "))
    raw = json.loads(line.removeprefix("BENCHJSON "))
    elapsed = raw["duration_us"] / 1e6
    statuses = {k: raw[k] for k in ("200", "401", "other") if raw[k]}
    return {
        "requests": raw["requests"],
        "seconds": elapsed,
        "rps": raw["requests"] / elapsed if elapsed else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "statuses": statuses,
        "socket_errors": raw["errors"],
        # wrk always runs the full -d; stopped early by the cap, req/s undercounts.
        "capped": raw["requests"] >= limit * WRK_THREADS,
    }


# -- the bundled client ---------------------------------------------------------------


def python_client(
    port: int,
    path: str,
    tokens: int,
    unknown: float,
    seconds: float,
    max_requests: int,
    connections: int,
    tmp: Path,
) -> dict[str, Any]:
    """Two processes (the GIL would cap one), each driving half the connections."""
    processes = 2
    per = max(1, connections // processes)
    jobs = [
        (port, path, tokens, unknown, seconds, max_requests // processes, per, i)
        for i in range(processes)
    ]
    # spawn: the benchmark process has threads by now, and fork would copy them.
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_client_process, jobs)
    latencies = sorted(x for part in parts for x in part["latencies"])
    statuses: Counter[str] = Counter()
    for part in parts:
        statuses.update(part["statuses"])
    elapsed = max(part["seconds"] for part in parts)
    count = len(latencies)
    return {
        "requests": count,
        "seconds": elapsed,
        "rps": count / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 50) / 1e6,
        "p99_ms": _percentile(latencies, 99) / 1e6,
        "statuses": dict(statuses),
        "socket_errors": sum(part["errors"] for part in parts),
        "capped": False,  # this client's clock stops with its last response
    }


def _percentile(sorted_values: list[int], p: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(p) - 1]


def _client_process(job: tuple[Any, ...]) -> dict[str, Any]:
    return asyncio.run(_drive(*job))


async def _drive(
    port: int, path: str, tokens: int, unknown: float, seconds: float,
    max_requests: int, connections: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(secrets.randbits(64) + seed)
    deadline = time.monotonic() + seconds
    state = {"left": max_requests, "errors": 0}
    latencies: list[int] = []
    statuses: Counter[str] = Counter()

    def next_request() -> bytes:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if tokens:
            if unknown and rng.random() < unknown:
                token = "unknown-" + secrets.token_urlsafe(24)
            else:
                token = f"load-{rng.randrange(tokens):04d}"
            lines.append(f"Authorization: Bearer {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while state["left"] > 0 and time.monotonic() < deadline:
                state["left"] -= 1
                started = time.perf_counter_ns()
                writer.write(next_request())
                status, close = await _read_response(reader)
                latencies.append(time.perf_counter_ns() - started)
                statuses[status] += 1
                if close:
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError):
            state["errors"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "seconds": time.monotonic() - started,
        "errors": state["errors"],
    }


async def _read_response(reader: asyncio.StreamReader) -> tuple[str, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close
