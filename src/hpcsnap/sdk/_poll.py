"""Adaptive polling: start fast, slow down to a short cap (never the 10 s naps of old SDKs)."""

from __future__ import annotations

import time
from collections.abc import Iterator

#: A snapshot or task that completes is seen within about this many seconds.
SNAPSHOT_CAP = 0.5
TASK_CAP = 1.0


def delays(
    *, first: float = 0.05, factor: float = 1.5, cap: float = SNAPSHOT_CAP
) -> Iterator[float]:
    """0.05, 0.075, 0.11, ... up to ``cap``, then ``cap`` forever."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


class Deadline:
    """A time-out in seconds (None: never) measured on the monotonic clock."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.end = None if timeout is None else time.monotonic() + max(0.0, timeout)

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the deadline comes first."""
        left = self.remaining()
        time.sleep(delay if left is None else min(delay, left))
