"""The targets of issue 5, and the reference figures it quotes, as checks.

Goals are bearerguard's promises (``yes`` / ``NO +x%`` in the table).
References are what the issue measured for other libraries on this kind of
machine; they are not ours to meet, so the table only says whether this run
reproduces them within 15 % (``ref ~``) or not (``ref ≠``), which tells how
far this machine is from the reference one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    text: str
    low: float | None
    high: float
    goal: bool  # False: a reference figure
    unit: str = "x"  # "x": ratio to the floor; "us": microseconds

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.goal:
            if value <= self.high:
                return "yes"
            return f"NO +{(value / self.high - 1) * 100:.0f}%"
        low = self.low if self.low is not None else self.high
        return "ref ~" if low * 0.85 <= value <= self.high * 1.15 else "ref ≠"

    def met(self, value: float | None) -> bool | None:
        if value is None or not self.goal:
            return None
        return value <= self.high


TARGETS: dict[str, Target] = {
    "floor": Target("ref 122-130 us", 122, 130, goal=False, unit="us"),
    "hit": Target("<= 1.10x", None, 1.10, goal=True),
    "miss_rs256": Target("<= 2.5x", None, 2.5, goal=True),
    "authlib_jwt_rs256": Target("ref 5.2-5.7x", 5.2, 5.7, goal=False),
    "authlib_jwks20": Target("ref ~29x", None, 29.0, goal=False),
    "authlib_sqla": Target("ref ~6.5x", None, 6.5, goal=False),
    "fjwt_rs256": Target("ref 6.1-6.5x", 6.1, 6.5, goal=False),
    "pyjwt_rs256": Target("ref ~2.7x", None, 2.7, goal=False),
    "authlib_introspection": Target("ref 19-23x", 19, 23, goal=False),
    "ttlcache_hit": Target("ref 1.12-1.17x", 1.12, 1.17, goal=False),
    "authlib_wrap_hit": Target("ref ~1.65x", None, 1.65, goal=False),
}

#: Flatness goals for the growth curves: largest / smallest within +-10 %.
FLAT = 0.10
#: Memory goal per cached JWT, in bytes.
MEMORY_PER_JWT = 1024
#: gunicorn: protected / floor throughput at least, p99 at most.
LOAD_THROUGHPUT = 0.9
LOAD_P99 = 1.2
