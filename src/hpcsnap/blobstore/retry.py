"""A backend that retries another one's transient failures, with exponential backoff.

Only :class:`~hpcsnap.blobstore.base.TransientBlobError` is retried; every other error passes
through at once. An operation is retried only when replaying it is safe:

- ``stat``, ``open``, ``delete``, ``flush``: always;
- ``put``: when the source can be rewound (``seekable()``); a stream already consumed cannot
  be read again, so its put fails at once (the backend retries each request of it itself);
- ``list``, ``scan``: the listing starts over and skips the keys already yielded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar

from hpcsnap.blobstore.base import Backend, Listed, TransientBlobError

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryingBackend:
    """``inner`` with up to ``attempts`` tries per operation (see the module docstring)."""

    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r})"

    def _delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before try number ``attempt + 2``."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311

    def _retry(
        self, what: str, fn: Callable[[], T], before_retry: Callable[[], bool] | None = None
    ) -> T:
        for attempt in range(self.attempts):
            try:
                return fn()
            except TransientBlobError as exc:
                last = attempt + 1 == self.attempts
                if last or (before_retry is not None and not before_retry()):
                    raise
                delay = self._delay(attempt)
                log.warning("%s failed (%s); try %d in %.1f s", what, exc, attempt + 2, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def put(self, key: str, src: BinaryIO) -> None:
        try:
            start: int | None = src.tell() if src.seekable() else None
        except OSError:
            start = None

        def rewind() -> bool:
            if start is None:
                return False
            src.seek(start)
            return True

        self._retry(f"put {key}", lambda: self.inner.put(key, src), rewind)

    def open(self, key: str) -> BinaryIO:
        return self._retry(f"open {key}", lambda: self.inner.open(key))

    def stat(self, key: str) -> int | None:
        return self._retry(f"stat {key}", lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._retry(f"delete {key}", lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._listing(prefix, lambda: self.inner.list(prefix), lambda key: key)

    def scan(self, prefix: str = "") -> Iterator[Listed]:
        return self._listing(prefix, lambda: self.inner.scan(prefix), lambda item: item.key)

    def _listing(
        self, prefix: str, start: Callable[[], Iterator[T]], key_of: Callable[[T], str]
    ) -> Iterator[T]:
        """The items of ``start()``; after a transient failure, those of a new listing whose
        key was not yielded yet."""
        seen: set[str] = set()
        for attempt in range(self.attempts):
            try:
                for item in start():
                    key = key_of(item)
                    if key not in seen:
                        seen.add(key)
                        yield item
                return
            except TransientBlobError as exc:
                if attempt + 1 == self.attempts:
                    raise
                delay = self._delay(attempt)
                log.warning("list %r failed (%s); starting over in %.1f s", prefix, exc, delay)
                self._sleep(delay)

    def flush(self) -> None:
        self._retry("flush", self.inner.flush)

    def describe(self) -> dict[str, str]:
        return self.inner.describe()
