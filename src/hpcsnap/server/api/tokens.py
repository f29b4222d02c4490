"""Your API tokens: list them, create another, revoke one (at once, everywhere).

A token is shown once, when it is created; the server keeps its SHA-256 hash (and, to check S3
signatures, a sealed copy). Revoking a token refuses it from the next request on: on the REST
API, on the S3 endpoint and in every web session opened with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.server.api.deps import Ctx, DbSession, User
from hpcsnap.server.auth import issue_token
from hpcsnap.server.db import Token
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.errors import Conflict, NotFound
from hpcsnap.server.s3.secrets import sealer_for
from hpcsnap.server.taskviews import fmt_date

router = APIRouter(tags=["tokens"])


def _active(session: Session, user_id: int) -> list[Token]:
    return list(
        session.scalars(
            select(Token)
            .where(Token.user_id == user_id, Token.kind == "user", Token.revoked_at.is_(None))
            .order_by(Token.id)
        )
    )


def token_json(tok: Token, current: int | None) -> dict[str, Any]:
    return {"id": tok.id, "created": fmt_date(tok.created_at), "current": tok.id == current}


@router.get("/tokens")
def list_tokens(user: User, session: DbSession) -> list[dict[str, Any]]:
    """Your tokens that are not revoked (never their value)."""
    return [token_json(t, user.token_id) for t in _active(session, user.user_id)]


@router.post("/tokens", status_code=201)
def create_token(user: User, session: DbSession, ctx: Ctx) -> dict[str, Any]:
    """A new token for you, shown once in ``token``."""
    token = issue_token(session, user.user_id, sealer=sealer_for(ctx.settings.data_dir))
    session.flush()
    tok = _active(session, user.user_id)[-1]
    return {**token_json(tok, user.token_id), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, user: User, session: DbSession) -> Response:
    """Revoke one of your tokens (the one you call with too); not your last one."""
    active = _active(session, user.user_id)
    tok = next((t for t in active if t.id == token_id), None)
    if tok is None:
        raise NotFound(f"token {token_id} not found (or already revoked)")
    if len(active) == 1:
        raise Conflict(
            f"token {token_id} is your last one: create another (POST /v1/tokens) before "
            "revoking it"
        )
    tok.revoked_at = utcnow()
    return Response(status_code=204)
