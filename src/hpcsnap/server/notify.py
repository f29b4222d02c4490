"""In-process wake-ups: answer an agent's long-poll as soon as something is committed for it.

Waiters also re-read the database on a short period, so several server processes sharing one
database still work; this only removes the polling delay when the request and the long-poll
land on the same process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}


@contextmanager
def subscribe(key: str) -> Iterator[asyncio.Event]:
    """An event set by :func:`wake` for ``key`` (call from inside the event loop)."""
    item = (asyncio.get_running_loop(), asyncio.Event())
    with _lock:
        _waiters.setdefault(key, set()).add(item)
    try:
        yield item[1]
    finally:
        with _lock:
            waiters = _waiters.get(key)
            if waiters is not None:
                waiters.discard(item)
                if not waiters:
                    del _waiters[key]


def wake(key: str) -> None:
    """Wake every waiter of ``key`` (from any thread)."""
    with _lock:
        waiters = list(_waiters.get(key, ()))
    for loop, event in waiters:
        loop.call_soon_threadsafe(event.set)
