"""A bandwidth cap: sleep as needed so bytes are consumed at no more than a given rate."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket holding at most one second of bytes, starting empty."""

    def __init__(
        self,
        bytes_per_sec: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bytes_per_sec <= 0:
            raise ValueError(f"bandwidth cap must be positive, not {bytes_per_sec}")
        self.rate = bytes_per_sec
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()

    def consume(self, n: int) -> None:
        """Account for ``n`` bytes just transferred, sleeping if they came too fast."""
        now = self._clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self._tokens < 0:
            self._sleep(-self._tokens / self.rate)
