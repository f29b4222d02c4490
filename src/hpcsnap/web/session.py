"""Web sessions: a signed cookie naming the API token a user signed in with, and CSRF tokens.

The cookie holds the token's SHA-256 hash (as stored in the database), never the token itself,
plus a random CSRF token; it is signed and time-stamped with a secret generated once into the data
directory (mode 0600). Revoking the token ends every session opened with it.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.server.auth import Caller
from hpcsnap.server.db import Token, User

COOKIE = "hpcsnap_session"
#: How long a session lasts (seconds); signing in again starts a new one.
MAX_AGE = 7 * 24 * 3600
SECRET_FILE = "web-secret"  # noqa: S105 (a file name)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def load_secret(data_dir: Path) -> str:
    """The signing secret in ``data_dir/web-secret``, created (0600) on first use.

    Written to a temporary file and hard-linked into place, so concurrent first starts agree on
    one secret and nobody reads a half-written file.
    """
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".web-secret-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise RuntimeError(f"{path} holds no usable secret: delete it to generate a new one")
    return secret


@dataclass(frozen=True)
class WebSession:
    """What the cookie says: who signed in (``None``: nobody yet) and the CSRF token."""

    token_hash: str | None
    csrf: str
    issued: float = 0.0

    @classmethod
    def new(cls, token_hash: str | None = None) -> WebSession:
        return cls(token_hash, secrets.token_urlsafe(32), time.time())

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), (given or "").encode())


class SessionCodec:
    """Signs sessions into cookie values and back; a bad or expired value is no session."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="hpcsnap.web.session")

    def dumps(self, session: WebSession) -> str:
        return self._serializer.dumps({"u": session.token_hash, "c": session.csrf})

    def loads(self, value: str | None) -> WebSession | None:
        if not value:
            return None
        try:
            data, signed_at = self._serializer.loads(value, max_age=MAX_AGE, return_timestamp=True)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        user, csrf = data.get("u"), data.get("c")
        if not isinstance(csrf, str) or not (user is None or isinstance(user, str)):
            return None
        return WebSession(user, csrf, signed_at.timestamp())


@dataclass(frozen=True)
class Account:
    """A signed-in user: the same :class:`Caller` the API builds from a token, and a name."""

    caller: Caller
    name: str


def account_for(session: Session, token_hash: str) -> Account | None:
    """The user owning the (user, not revoked) token with this hash."""
    row = session.execute(
        select(Token, User)
        .join(User, User.id == Token.user_id)
        .where(Token.token_hash == token_hash, Token.kind == "user", Token.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    _, user = row
    caller = Caller(user_id=user.id, is_admin=user.is_admin, kind="user", email=user.email)
    return Account(caller, user.name)
