"""Dependencies shared by the routes: the server context, a DB session, the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from hpcsnap.server.auth import Caller, authenticate, parse_authorization
from hpcsnap.server.context import ServerContext
from hpcsnap.server.errors import NotFound
from hpcsnap.server.s3.secrets import sealer_for


def get_ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServerContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as s:
        yield s


#: Committed before the response is sent (scope "function"), so that a client's next request
#: always sees what the previous one wrote.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def get_caller(
    ctx: Ctx, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Caller:
    token = parse_authorization(authorization)
    with ctx.db.session() as s:
        # a token's first use also keeps its sealed copy, so that it can sign S3 requests
        return authenticate(s, token, sealer=sealer_for(ctx.settings.data_dir))


def get_user(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """A user token (agent credentials cannot use the user API)."""
    if caller.kind != "user":
        raise NotFound("no such route for an agent credential")
    return caller


User = Annotated[Caller, Depends(get_user)]
AnyCaller = Annotated[Caller, Depends(get_caller)]
