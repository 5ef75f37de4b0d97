"""The measuring core: cases, the interleaved round runner, and the statistics.

A case is a Flask WSGI app plus the requests to send it. Every request is one
call of ``app(environ, start_response)`` with a fresh copy of a prebuilt
environ, its body consumed and its status checked, so the cost measured is the
whole Flask request, as a WSGI server would pay it, minus the socket.

All cases of a group run in one process, interleaved round by round
(A B C A B C ...); each round times a fixed batch of requests per case with
``time.perf_counter_ns``. Ratios are taken round by round (case / floor of the
same round) and the median of those is reported, so a noisy neighbour that
slows one round slows every case in it and cancels out.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.test import EnvironBuilder

WSGIApp = Callable[..., Any]
Environ = dict[str, Any]
PATH = "/hello/protected"


class Skip(Exception):
    """A case that cannot run here; ``kind`` says why, for the smoke test.

    ``stub``: the bearerguard feature has not landed; ``service``: PostgreSQL or
    Redis is not reachable; ``package``: an optional package is not installed.
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def environ_for(
    token: str | None, path: str = PATH, scheme: str = "Bearer", **extra: str
) -> Environ:
    """A GET environ, built once by Werkzeug; copied on every request.
    ``extra``: more headers (a ``DPoP`` proof)."""
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    headers.update(extra)
    builder = EnvironBuilder(path=path, headers=headers)
    try:
        return builder.get_environ()
    finally:
        builder.close()


class Feed:
    """The environs a case is sent: a fixed cycle (cache hits, uncached libraries)
    or never-seen tokens drawn from a pool minted before timing (cache misses)."""

    def __init__(
        self,
        tokens: list[str] | None = None,
        *,
        mint: Callable[[int], list[str]] | None = None,
        path: str = PATH,
        build: Callable[[int], list[Environ]] | None = None,
    ) -> None:
        if [tokens, mint, build].count(None) != 2:
            raise ValueError("give tokens to cycle, mint for fresh ones, or build fresh environs")
        self.path = path
        self.fresh = tokens is None
        self._mint = mint
        self._build = build
        self._cycle = [environ_for(t, path) for t in tokens] if tokens is not None else []
        self._pool: list[Environ] = []
        self._next = 0

    def prepare(self, count: int) -> None:
        """Mint ``count`` fresh tokens now, outside any timed region."""
        if self._mint is not None:
            self._pool.extend(environ_for(t, self.path) for t in self._mint(count))
        elif self._build is not None:
            self._pool.extend(self._build(count))

    def take(self, count: int) -> list[Environ]:
        if not self.fresh:
            cycle = self._cycle
            return [cycle[(self._next + i) % len(cycle)] for i in range(count)]
        if len(self._pool) < count:
            self.prepare(count - len(self._pool))
        batch, self._pool = self._pool[:count], self._pool[count:]
        return batch


@dataclass
class Case:
    """One thing measured. ``authlib`` names the case it is compared against."""

    name: str
    app: WSGIApp
    feed: Feed
    expected: int = 200
    batch: int | None = None  # None: calibrated to the profile's batch time
    authlib: str | None = None
    target: str | None = None  # a key of targets.TARGETS
    floor: str | None = None  # another floor for the target (an app with the same extensions)
    # filled in by the runner: ns per request of each recorded batch, and of the
    # floor batches around it
    samples_ns: list[float] = field(default_factory=list)
    paired_ns: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SkippedCase:
    name: str
    reason: str
    kind: str


@dataclass
class Group:
    """Cases measured together against one floor."""

    name: str
    title: str
    floor: Case
    cases: list[Case] = field(default_factory=list)
    skipped: list[SkippedCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rounds: int = 0

    def all_cases(self) -> list[Case]:
        return [self.floor, *self.cases]

    def skip(self, names: list[str] | str, error: Skip) -> None:
        for name in [names] if isinstance(names, str) else names:
            self.skipped.append(SkippedCase(name, error.reason, error.kind))


def status_log() -> tuple[list[str], Callable[..., None]]:
    """A ``start_response`` that keeps every status line, and the list it fills:
    for runs checked once at their end (the instruction, bytecode and
    interference counts), where the timed batches keep only the last line."""
    statuses: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(s)

    return statuses, start_response


def _start_response_recorder() -> tuple[list[str], Callable[..., Any]]:
    status = [""]

    def start_response(s: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        status[0] = s
        return _discard

    return status, start_response


def _discard(_data: bytes) -> None:
    pass


def call(app: WSGIApp, environ: Environ) -> tuple[str, bytes]:
    """One request, outside timing: the status line and the body."""
    status, start_response = _start_response_recorder()
    body = app(environ.copy(), start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0], data


def time_batch(app: WSGIApp, environs: list[Environ], expected: str) -> tuple[int, int, str]:
    """Send every environ; return (elapsed ns, requests with another status, last such)."""
    status, start_response = _start_response_recorder()
    bad, seen = 0, ""
    clock = time.perf_counter_ns
    t0 = clock()
    for environ in environs:
        body = app(environ.copy(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
        if not status[0].startswith(expected):
            bad += 1
            seen = status[0]
    return clock() - t0, bad, seen


def probe(case: Case) -> None:
    """One untimed request; a wrong status marks the case failed, with the body."""
    environ = case.feed.take(1)[0]
    status, body = call(case.app, environ)
    if not status.startswith(str(case.expected)):
        case.error = f"probe got {status!r}, expected {case.expected}: {body[:200]!r}"


def calibrate(case: Case, batch_ns: float, lo: int, hi: int) -> None:
    """Pick a batch that takes about ``batch_ns``; fixed for every round after."""
    if case.batch is not None:
        return
    environs = case.feed.take(max(lo, 5))
    elapsed, _, _ = time_batch(case.app, environs, str(case.expected))
    per_request = max(elapsed / len(environs), 1.0)
    case.batch = int(min(hi, max(lo, batch_ns / per_request)))


def run_group(
    group: Group,
    *,
    rounds: int,
    warmup: int,
    batch_ns: float,
    batch_bounds: tuple[int, int],
    log: Callable[[str], None],
) -> None:
    """Measure every case of ``group``, interleaved, ``warmup`` + ``rounds`` times.

    A round is F A F B F C ... F: the cases in a fixed order, with a floor
    batch before and after each, so every case batch has a floor measured
    next to it in time (``paired_ns``, the mean of its two neighbours) and a
    burst of load from elsewhere on the machine moves both.
    """
    floor = group.floor
    cases = []
    for case in group.all_cases():
        probe(case)
        if case.error is not None:
            log(f"  FAILED {case.name}: {case.error}")
            continue
        calibrate(case, batch_ns, *batch_bounds)
        assert case.batch is not None
        runs = (rounds + warmup) * (len(group.cases) + 1 if case is floor else 1)
        case.feed.prepare(case.batch * runs)
        cases.append(case)
    if floor not in cases:
        log(f"  the floor of {group.name} failed; group not measured")
        return
    others = [c for c in cases if c is not floor]
    started = time.monotonic()
    for round_no in range(warmup + rounds):
        record = round_no >= warmup
        before = _measure(floor)
        floors = [before]
        for case in others:
            sample = _measure(case)
            after = _measure(floor)
            floors.append(after)
            if record:
                case.samples_ns.append(sample)
                case.paired_ns.append((before + after) / 2)
            before = after
        if record:
            floor.samples_ns += floors
        if round_no == warmup:
            eta = (time.monotonic() - started) / (warmup + 1) * rounds
            log(f"  {group.name}: {len(others)} cases, ~{eta:.0f}s")
    group.rounds = rounds
    for case in cases:
        if case.error is not None:
            log(f"  FAILED {case.name}: {case.error}")


def _measure(case: Case) -> float:
    """Time one batch of ``case``; ns per request."""
    assert case.batch is not None
    environs = case.feed.take(case.batch)
    elapsed, bad, seen = time_batch(case.app, environs, str(case.expected))
    if bad:
        case.statuses[seen] = case.statuses.get(seen, 0) + bad
        case.error = f"{bad} of {len(environs)} requests got {seen!r}"
    ok = str(case.expected)
    case.statuses[ok] = case.statuses.get(ok, 0) + len(environs) - bad
    return elapsed / len(environs)


# -- statistics ------------------------------------------------------------------


def median_us(case: Case) -> float | None:
    return statistics.median(case.samples_ns) / 1000 if case.samples_ns else None


def x_floor(case: Case) -> list[float]:
    """Per round: the case's batch over the floor batches next to it."""
    return [c / f for c, f in zip(case.samples_ns, case.paired_ns, strict=True)]


def ratio(case: Case, base: Case | None = None) -> float | None:
    """The median over rounds of case / base, each first taken over its paired floor.

    Without ``base``: the median of :func:`x_floor`, the ratio to the floor.
    With another case (an Authlib case, the other end of a growth curve): the
    median of the round-by-round quotient of their floor ratios.
    """
    if not case.paired_ns:
        return None
    if base is None:
        return statistics.median(x_floor(case))
    if not base.paired_ns:
        return None
    mine, theirs = x_floor(case), x_floor(base)
    if len(mine) != len(theirs):
        return None
    return statistics.median(a / b for a, b in zip(mine, theirs, strict=True))


def spread(case: Case) -> float | None:
    """Round-to-round noise: half the inter-quartile range over the median, of
    the per-round floor ratios (of the raw batches, for the floor itself)."""
    samples = x_floor(case) if case.paired_ns else case.samples_ns
    if len(samples) < 4:
        return None
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return (q3 - q1) / 2 / statistics.median(samples)


def by_name(groups: list[Group]) -> dict[str, Case]:
    return {case.name: case for group in groups for case in group.all_cases()}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
