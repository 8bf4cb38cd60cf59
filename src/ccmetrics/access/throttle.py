"""Failed sign-ins, counted per name and per client address: past a few in a window, sign-in waits.

What is remembered is bounded (``Recent``): a client that tries a million names or addresses pushes out old
entries, it cannot grow the server's memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..recent import Recent

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
REMEMBERED = 10_000  # names and addresses whose failures are held (up to twice this)


@dataclass(frozen=True, slots=True)
class Failures:
    """The times of the recent failures of one name or address, oldest first."""

    times: tuple[float, ...] = ()

    def within(self, now: float, window_s: float) -> Failures:
        return Failures(tuple(t for t in self.times if now - t < window_s))


class Throttle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        remembered: int = REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: Recent[str, Failures] = Recent(remembered)

    def wait_s(self, *keys: str) -> int:
        """Seconds until any of ``keys`` (a name, an address) may try again; 0: now."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            recent = (self._failures.get(key) or Failures()).within(now, self.window_s)
            if len(recent.times) >= self.max_failures:
                wait = max(wait, recent.times[-self.max_failures] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            recent = (self._failures.get(key) or Failures()).within(now, self.window_s)
            # Only the last max_failures times matter: a key's entry stays small however often it fails.
            self._failures[key] = Failures((*recent.times, now)[-self.max_failures :])

    def succeeded(self, name_key: str) -> None:
        """A right password clears its name's failures (not its address's: one address may try many names)."""
        self._failures[name_key] = Failures()
