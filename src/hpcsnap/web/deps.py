"""What every web route needs: the signed-in user, CSRF checks, and errors shown as pages.

Routes of the web routers use :class:`WebRoute`: an :class:`ApiError` raised anywhere below
(``get_task``'s 404, ``build_task``'s 400...) becomes an HTML page with the same status, or the
API's ``{"message": ...}`` for the pages' scripts (``/ui/api/...`` or ``Accept: application/json``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import JSONResponse, RedirectResponse, Response

from hpcsnap.server.auth import Caller
from hpcsnap.server.context import ServerContext
from hpcsnap.server.errors import ApiError
from hpcsnap.web.render import page
from hpcsnap.web.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    MAX_AGE,
    SessionCodec,
    WebSession,
    account_for,
    load_secret,
)


class LoginRequired(Exception):
    """No valid session: pages redirect to the sign-in page, scripts get 401."""


class CsrfFailed(ApiError):
    status = 403


def server_ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def codec(request: Request) -> SessionCodec:
    state = request.app.state
    found: SessionCodec | None = getattr(state, "web_codec", None)
    if found is None:
        found = SessionCodec(load_secret(server_ctx(request).settings.data_dir))
        state.web_codec = found
    return found


def read_session(request: Request) -> WebSession | None:
    return codec(request).loads(request.cookies.get(COOKIE))


def set_session(request: Request, response: Response, session: WebSession) -> None:
    response.set_cookie(
        COOKIE,
        codec(request).dumps(session),
        max_age=MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https"
        or server_ctx(request).settings.base_url.startswith("https://"),
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


@dataclass(frozen=True)
class WebUser:
    """The signed-in user of a request: the API's :class:`Caller`, a name, the CSRF token."""

    caller: Caller
    name: str
    csrf: str

    @property
    def id(self) -> int:
        return self.caller.user_id


def current_user(request: Request) -> WebUser:
    session = read_session(request)
    if session is None or session.token_hash is None:
        raise LoginRequired
    with server_ctx(request).db.session() as s:
        account = account_for(s, session.token_hash)
    if account is None:
        raise LoginRequired
    return WebUser(account.caller, account.name, session.csrf)


Me = Annotated[WebUser, Depends(current_user)]


async def check_csrf(request: Request, user: WebUser, form: FormData | None = None) -> None:
    """The request carries the session's CSRF token (header for scripts, field for forms)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        if form is None:
            form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not WebSession(None, user.csrf).csrf_ok(given):
        raise CsrfFailed(
            "this form has expired or did not come from this site: reload the page and try again"
        )


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/ui/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    return target


def error_response(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"message": message}, status_code=status)
    titles = {400: "Not accepted", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}
    try:
        user: WebUser | None = current_user(request)
    except LoginRequired:
        user = None
    return page(
        "error.html",
        status=status,
        user=user,
        csrf=user.csrf if user else "",
        title=titles.get(status, "Error"),
        message=message,
        status_code=status,
    )


class WebRoute(APIRoute):
    """A route whose errors are pages (or ``{"message"}`` for scripts), never raw API JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                if wants_json(request):
                    return JSONResponse(
                        {"message": "not signed in (or the session expired): sign in again"},
                        status_code=401,
                    )
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            except ApiError as exc:
                return error_response(request, exc.status, exc.message)
            except RequestValidationError as exc:
                parts = [
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e['msg']}"
                    for e in exc.errors()[:3]
                ]
                return error_response(request, 400, "; ".join(parts) or "invalid request")

        return guarded
