"""The ``bearerguard`` logger, token fingerprints, and throttled warnings.

Tokens are never logged: records carry :func:`fingerprint`, a short hash.
Backend failures are logged once per interval, not once per request, so an
outage under load does not flood the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from ._forksafe import renew_after_fork
from .core.credentials import digest

logger = logging.getLogger("bearerguard")

#: Seconds between two records of the same throttled event.
THROTTLE_INTERVAL = 30.0

_last: dict[str, float] = {}
_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log: the start of
    its digest (the cache key), so records and keys name it alike."""
    return digest(token).hex()[:12]


def throttled(
    event: str,
    message: str,
    *args: Any,
    level: int = logging.WARNING,
    exc_info: BaseException | None = None,
) -> bool:
    """Log ``message`` unless ``event`` was logged in the last interval."""
    now = time.monotonic()
    with _lock:
        last = _last.get(event)
        if last is not None and now - last < THROTTLE_INTERVAL:
            return False
        _last[event] = now
    logger.log(level, message, *args, exc_info=exc_info)
    return True


def reset_throttle() -> None:
    """Forget every throttled event (for tests)."""
    with _lock:
        _last.clear()
