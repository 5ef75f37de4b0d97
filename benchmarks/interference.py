"""What a signature check and a Flask request cost each other: the same calls, timed alone.

A cache miss runs a Flask request and a signature check back to back. In a
loop of its own each runs with its code and data in the CPU's caches and its
branches predicted; after the other, it runs cold. Callgrind counts the same
instructions either way (``benchmarks.instructions``: the in-place verify is
the floor + the raw verify + a few thousand instructions of parsing), so what
the ``floor.verify-<alg>`` limit adds over ``floor + raw verify`` in time is
this, which no code on the Python side can remove.

``python -m benchmarks.interference [ALG ...]`` prints, per algorithm (ES256
and RS256 by default), the median of: a verify in a loop, a verify right after
a Flask request, a Flask floor request in a loop, and one right after a verify.
"""

from __future__ import annotations

import statistics
import sys
import time

from .apps import make_app
from .cases_limits import verify_parts
from .harness import environ_for, status_log
from .tokens import Minter, new_key

ROUNDS, PER_ROUND = 5, 400


def measure(alg: str, rounds: int = ROUNDS, per_round: int = PER_ROUND) -> dict[str, float]:
    """Median seconds of each of the four timings, interleaved round by round."""
    key = new_key(alg)
    tokens = Minter(key)(per_round)
    parts = [verify_parts(key, token) for token in tokens]
    floor = make_app("floor")
    status, start_response = status_log()

    floor(environ_for(tokens[0]), start_response)  # first-request work, untimed
    clock = time.perf_counter
    times: dict[str, list[float]] = {
        "verify, in a loop": [],
        "verify, after a Flask request": [],
        "Flask request, in a loop": [],
        "Flask request, after a verify": [],
    }
    answers: list[bool] = []
    for _ in range(rounds):
        for found, signing_input, signature in parts:
            start = clock()
            answers.append(found.verify(alg, signing_input, signature))
            times["verify, in a loop"].append(clock() - start)
        environs = [environ_for(tokens[0]) for _ in parts]
        for (found, signing_input, signature), environ in zip(parts, environs, strict=True):
            floor(environ, start_response)
            start = clock()
            answers.append(found.verify(alg, signing_input, signature))
            times["verify, after a Flask request"].append(clock() - start)
        environs = [environ_for(tokens[0]) for _ in parts]
        for environ in environs:
            start = clock()
            floor(environ, start_response)
            times["Flask request, in a loop"].append(clock() - start)
        environs = [environ_for(tokens[0]) for _ in parts]
        for (found, signing_input, signature), environ in zip(parts, environs, strict=True):
            answers.append(found.verify(alg, signing_input, signature))
            start = clock()
            floor(environ, start_response)
            times["Flask request, after a verify"].append(clock() - start)
    if not all(answers) or any(not s.startswith("200") for s in status):
        raise RuntimeError(f"{alg}: a signature failed or a request was refused")
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str]) -> int:
    for alg in argv or ["ES256", "RS256"]:
        medians = measure(alg)
        for name, seconds in medians.items():
            print(f"{alg} {name:32} {seconds * 1e6:8.1f} us")
        warm = medians["verify, in a loop"] + medians["Flask request, in a loop"]
        cold = medians["verify, after a Flask request"] + medians["Flask request, after a verify"]
        print(f"{alg} each after the other - each in a loop: {(cold - warm) * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
