"""The outage gate a broadcast keeps for its store: when checks turn to 503.

Without ``max_outage`` the gate stays open once the broadcast has started
(availability first: serve from the local copy however long the outage
lasts). With it, the gate shuts ``max_outage`` seconds after the last word
heard from the shared copy (a message, a PING answer), or after the first
attempt to reach it when none came (consistency first). The gate is the
store's ``refuse_after``, a float, so the hot path pays one comparison.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .revocation import RevocationStore


class OutageGate:
    """The link's health, and the store's gate it implies."""

    def __init__(self, store: RevocationStore, max_outage: float | None) -> None:
        self.store = store
        self.clock = store.clock
        self.max_outage = max_outage
        #: The last word heard from the shared copy (wall clock), across forks.
        self.last_alive: float | None = None
        self.reset()

    def reset(self) -> None:
        """A new process (or not started yet): not healthy, and the gate shut
        until the broadcast starts here."""
        self._lock = threading.Lock()
        self.healthy = False
        self._down_since: float | None = None
        self.store.refuse_after = -math.inf

    def alive(self) -> None:
        """The shared copy answered: the outage clock restarts from now.

        A silent partition (packets dropped, no RST) raises nothing for
        seconds; counting from the last answer rather than from a detected
        failure is what bounds it by ``max_outage``. One float store: the hot
        path's gate moves without a lock.
        """
        now = self.last_alive = self.clock()
        if self.max_outage is not None:
            self.store.refuse_after = now + self.max_outage

    def started(self) -> None:
        """The first attempt in this process is over: open the gate, or start
        the outage clock if it failed."""
        with self._lock:
            if self._down_since is None and not self.healthy:
                self._down_since = self.clock()
            self._update()

    def up(self) -> None:
        with self._lock:
            self.healthy = True
            self._down_since = None
            self._update()

    def down(self) -> bool:
        """The link failed; True if it was healthy until now (a new outage)."""
        with self._lock:
            was_healthy, self.healthy = self.healthy, False
            if self._down_since is None:
                self._down_since = self.clock()
            self._update()  # only ever after start: the gate opens or closes
        return was_healthy

    def _update(self) -> None:
        """Set the store's gate (lock held): ``max_outage`` after the last
        answer, or after the first attempt if none came."""
        if self.max_outage is None:
            self.store.refuse_after = math.inf
        else:
            since = self.last_alive or self._down_since or self.clock()
            self.store.refuse_after = since + self.max_outage
