"""First start: servers starting together on one empty database create one admin between them."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from hpcsnap.server.bootstrap import ensure_admin
from hpcsnap.server.db import Database, User


def test_servers_starting_together_create_one_admin(db: Database, tmp_path: Path) -> None:
    """Each "server" has its own engine and data directory, as on separate hosts; they all
    check for users at once. Exactly one creates ``admin`` and hands out its token; the others
    see it and start normally (before the fix, the losers failed on the unique user name)."""
    servers = 4
    barrier = threading.Barrier(servers)
    tokens: list[str | None] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        other = Database(db.url)
        data = tmp_path / f"server{i}"
        data.mkdir()
        try:
            barrier.wait()
            tokens.append(ensure_admin(other, data))
        except BaseException as exc:
            errors.append(exc)
        finally:
            other.dispose()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len([t for t in tokens if t]) == 1, tokens
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1
    assert ensure_admin(db, tmp_path) is None  # and a later start creates nothing
