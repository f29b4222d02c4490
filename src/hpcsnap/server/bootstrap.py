"""First start: create the admin user and hand out its token once."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import func, select

from hpcsnap.server.auth import create_user
from hpcsnap.server.db import Database, User
from hpcsnap.server.s3.secrets import sealer_for


def ensure_admin(db: Database, data_dir: Path) -> str | None:
    """Create user ``admin`` if there is no user yet; return its token (else None).

    The token is also written to ``<data dir>/admin-token`` (mode 0600) so that it is not lost
    if the console scrolled away.
    """
    with db.session() as s:
        if s.scalar(select(func.count()).select_from(User)):
            return None
        _, token = create_user(s, "admin", is_admin=True, sealer=sealer_for(data_dir))
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
