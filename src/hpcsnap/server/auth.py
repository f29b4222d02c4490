"""API tokens: created once and shown once, stored as SHA-256 hashes, checked on every route.

User tokens also get a copy sealed with a server key, used only by the S3 endpoint to verify
AWS signatures (see :mod:`hpcsnap.server.s3.secrets`).

Timing: a token is found by the SHA-256 of what the caller sent, through the database's index;
the time that takes depends on the hash, never on how many leading characters of a real token
were right, so it leaks nothing usable. Secrets compared directly (the hash found, CSRF tokens,
S3 signatures) go through :func:`hmac.compare_digest`. A revoked token (``revoked_at``) is
refused from the next request on, by the API, the S3 endpoint and the web sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.server.db import Token, User
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.errors import BadRequest, Conflict, NotFound, Unauthorized
from hpcsnap.server.s3.secrets import Sealer

TOKEN_PREFIX = "hps_"  # noqa: S105 (a prefix, not a secret)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user with an API token, or a task's agent with its credential."""

    user_id: int
    is_admin: bool
    kind: str
    task_uuid: str | None = None
    email: str = ""
    #: The token the caller used (``None`` when not known, e.g. a web session).
    token_id: int | None = None


def issue_token(
    session: Session,
    user_id: int,
    *,
    kind: str = "user",
    task_uuid: str | None = None,
    sealer: Sealer | None = None,
) -> str:
    """A new token; a user token is also sealed when ``sealer`` is given (else on first use)."""
    token = new_token()
    sealed = sealer.seal(token) if sealer is not None and kind == "user" else None
    session.add(
        Token(
            user_id=user_id,
            token_hash=hash_token(token),
            kind=kind,
            task_uuid=task_uuid,
            sealed=sealed,
        )
    )
    return token


def create_user(
    session: Session,
    name: str,
    *,
    email: str | None = None,
    is_admin: bool = False,
    sealer: Sealer | None = None,
) -> tuple[User, str]:
    """Create a user and its first API token (returned in clear, once)."""
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() or c in "/\\\x00" for c in name):
        raise BadRequest(f"invalid user name {name!r}: 1-64 characters, no spaces or slashes")
    email = (email or f"{name}@hpcsnap.local").strip()
    if "@" not in email:
        raise BadRequest(f"invalid email {email!r}")
    clash = session.scalar(select(User).where((User.name == name) | (User.email == email)))
    if clash is not None:
        raise Conflict(f"a user named {name!r} or with email {email!r} already exists")
    user = User(name=name, email=email, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user, issue_token(session, user.id, sealer=sealer)


def parse_authorization(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization header: send 'Authorization: <token>'")
    header = header.strip()
    if header.lower().startswith("bearer "):
        header = header[7:].strip()
    if not header:
        raise Unauthorized("empty token in Authorization header")
    return header


def authenticate(session: Session, token: str, *, sealer: Sealer | None = None) -> Caller:
    """The caller owning ``token``; ``Unauthorized`` if it is unknown or revoked.

    With ``sealer``, a user token seen for the first time gets its sealed copy, so that it can
    sign S3 requests from then on.
    """
    digest = hash_token(token)
    row = session.execute(
        select(Token, User).join(User, User.id == Token.user_id).where(Token.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, digest):
        raise Unauthorized("invalid or revoked token")
    tok, user = row
    if tok.revoked_at is not None:
        raise Unauthorized("invalid or revoked token")
    if sealer is not None and tok.kind == "user" and tok.sealed is None:
        tok.sealed = sealer.seal(token)
    return Caller(
        user_id=user.id,
        is_admin=user.is_admin,
        kind=tok.kind,
        task_uuid=tok.task_uuid,
        email=user.email,
        token_id=tok.id,
    )


def revoke_user_tokens(session: Session, name: str, *, token: str | None = None) -> int:
    """Revoke the API tokens of user ``name`` (only ``token`` if given); how many were."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}")
    query = select(Token).where(
        Token.user_id == user.id, Token.kind == "user", Token.revoked_at.is_(None)
    )
    if token is not None:
        query = query.where(Token.token_hash == hash_token(token))
    rows = list(session.scalars(query))
    if token is not None and not rows:
        raise NotFound(f"that token is not an active token of {name!r}")
    for tok in rows:
        tok.revoked_at = utcnow()
    return len(rows)


def revoke_agent_tokens(session: Session, task_uuid: str) -> None:
    for tok in session.scalars(select(Token).where(Token.task_uuid == task_uuid)):
        tok.revoked_at = utcnow()
