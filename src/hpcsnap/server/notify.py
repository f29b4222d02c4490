"""In-process wake-ups: answer an agent's long-poll as soon as something is committed for it.

Writers name what to wake with :func:`wake_after_commit` (an agent's long-poll is woken by
whatever its task's news is, whichever code wrote it: see ``hpcsnap.server.api.agent``; a task's
event stream by each event recorded). Waiters also re-read the database on a slower period
(``HPCSNAP_PEER_POLL_MS``), for what another server process sharing the database wrote.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event as orm_events
from sqlalchemy.orm import Session

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


_PENDING = "hpcsnap.pending_wakes"


def wake_after_commit(session: Session, key: str) -> None:
    """Wake the waiters of ``key`` once ``session``'s transaction is committed (so that what
    they read then includes it); not at all if it is rolled back."""
    session.info.setdefault(_PENDING, set()).add(key)


@orm_events.listens_for(Session, "after_commit")
def _fire(session: Session) -> None:
    for key in session.info.pop(_PENDING, ()):
        wake(key)


@orm_events.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)
