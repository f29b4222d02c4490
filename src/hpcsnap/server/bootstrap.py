"""First start: create the admin user and hand out its token once."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from hpcsnap.server.auth import create_user
from hpcsnap.server.db import Database, User
from hpcsnap.server.db.session import hold_write_lock
from hpcsnap.server.s3.secrets import sealer_for

#: Key of the PostgreSQL advisory lock held while looking for the first user.
_BOOTSTRAP_LOCK = 0x6870_736E_6175  # "hpsnau"


def ensure_admin(db: Database, data_dir: Path) -> str | None:
    """Create user ``admin`` if there is no user yet; return its token (else None).

    The token is also written to ``<data dir>/admin-token`` (mode 0600) so that it is not lost
    if the console scrolled away.
    """
    with db.session() as s:
        _one_at_a_time(s)
        if s.scalar(select(func.count()).select_from(User)):
            return None
        _, token = create_user(s, "admin", is_admin=True, sealer=sealer_for(data_dir))
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _one_at_a_time(session: Session) -> None:
    """Make servers that start together on one empty database look for users one after the
    other (until this transaction ends), so that exactly one creates the admin and the others
    see it: an advisory lock on PostgreSQL, the write lock on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BOOTSTRAP_LOCK})
    hold_write_lock(session)
