"""Instructions per request under callgrind: what a change costs, whatever the neighbours do.

Timings on a shared machine swing by tens of percent from one run to the next;
instruction counts do not. Each case runs in its own process under
``valgrind --tool=callgrind``, with the same set-up (keys, tokens, apps, one
warm-up request each) and then ``N`` requests of one kind; the difference
from the run that sends none is that kind's instructions times ``N``.

``python -m benchmarks.instructions [N]`` prints, per request: the floor,
a Flask cache hit of an ES256 JWT, the limit of a hit (the floor + SHA-256 +
a dict lookup), a cache miss, the limit of a miss (the floor + one payload
parse + the signature check, ``floor.verify-es256``), and the raw ES256
verify; then hit - floor, limit - floor, miss - floor - raw, the miss limit
- floor - raw, and miss - its limit. Needs valgrind (Debian: ``valgrind``).
Under valgrind OpenSSL takes its generic SHA-256 (no SHA extensions), so a
hash counts several times what it costs on the CPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

KINDS = ("none", "floor", "hit", "limit", "miss", "verify", "raw")


def _child(kind: str, count: int) -> None:
    """One process's work: the set-up every kind shares, then ``count`` requests of ``kind``."""
    from .apps import make_app
    from .cases_jwt import bearerguard_jwt_protector
    from .cases_limits import digest_lookup, verify_parts, verifying
    from .harness import environ_for, status_log
    from .tokens import ISSUER, Minter, jwks, new_key

    key = new_key("ES256")
    tokens = Minter(key)(count + 2)
    protector = bearerguard_jwt_protector([(ISSUER, jwks(key))])
    apps = {
        "floor": make_app("floor"),
        "hit": make_app("hit", protector("profile")),
        "limit": make_app("limit", digest_lookup(tokens[:1])),
        "verify": make_app("verify", verifying(key)),
    }
    status, start_response = status_log()

    for app in apps.values():  # warm: imports, first-request work, the hit's cache entry
        app(environ_for(tokens[0]), start_response)
    found, signing_input, signature = verify_parts(key, tokens[1])
    found.verify("ES256", signing_input, signature)
    same = [environ_for(tokens[0]) for _ in range(count)]
    fresh = [environ_for(t) for t in tokens[2:]]
    parts = [verify_parts(key, t) for t in tokens[2:]]
    status.clear()
    if kind in ("floor", "hit", "limit"):
        for environ in same:
            apps[kind](environ, start_response)
    elif kind in ("miss", "verify"):
        app = apps["hit" if kind == "miss" else "verify"]
        for environ in fresh:
            app(environ, start_response)
    elif kind == "raw":
        for found, signing_input, signature in parts:
            found.verify("ES256", signing_input, signature)
    if any(not s.startswith("200") for s in status):
        raise SystemExit(f"{kind}: a request was refused: {set(status)}")


def _count(kind: str, count: int) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.instructions", "--child", kind, str(count),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind for {kind}: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)")
        return 1
    count = int(argv[0]) if argv else 200
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = dict(zip(KINDS, pool.map(lambda k: _count(k, count), KINDS), strict=True))
    per = {k: (totals[k] - totals["none"]) / count for k in KINDS[1:]}
    for kind, value in per.items():
        print(f"{kind:6} {value:12,.0f} instructions a request")
    print(f"hit - floor         {per['hit'] - per['floor']:12,.0f}")
    print(f"limit - floor       {per['limit'] - per['floor']:12,.0f}")
    print(f"miss - floor - raw  {per['miss'] - per['floor'] - per['raw']:12,.0f}")
    print(f"verify - floor - raw{per['verify'] - per['floor'] - per['raw']:12,.0f}")
    print(f"miss - verify       {per['miss'] - per['verify']:12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
