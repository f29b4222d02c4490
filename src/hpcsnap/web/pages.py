"""Signing in and out, the task list, a task's page and what its buttons do."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from hpcsnap.agent.protocol import RUNNING_STATES, TERMINAL_STATES, TaskState
from hpcsnap.server.api.tasks import get_task, request_abort
from hpcsnap.server.auth import authenticate, hash_token
from hpcsnap.server.db import Task
from hpcsnap.server.errors import ApiError, BadRequest, Conflict, Unauthorized
from hpcsnap.server.events import last_event_id
from hpcsnap.server.snapshots import check_label, create_snapshot
from hpcsnap.server.taskviews import task_json
from hpcsnap.web import queries
from hpcsnap.web.chart import chart_svg
from hpcsnap.web.deps import (
    Me,
    WebRoute,
    WebUser,
    check_csrf,
    clear_session,
    read_session,
    safe_next,
    server_ctx,
    set_session,
    wants_json,
)
from hpcsnap.web.render import page, render
from hpcsnap.web.session import WebSession, account_for

router = APIRouter(route_class=WebRoute, include_in_schema=False)

STATES = [s.value for s in TaskState]
UNITS = {"s": 1, "min": 60, "h": 3600}
#: Rows of the snapshot table (newest first); the chart and the API show them all.
SNAPSHOT_ROWS = 200
DONE_MESSAGES = {
    "snapshot": "Snapshot requested: it appears in the table below.",
    "periodic": "Periodic snapshot settings saved.",
    "stopped": "Periodic snapshots stopped.",
    "abort": "Abort requested.",
    "deleted": "Snapshot deleted.",
}


# --------------------------------------------------------------------------- sign in / out


@router.get("/login")
def login_form(request: Request, next: str = "/", signed_out: bool = False) -> Response:
    session = read_session(request)
    if session is not None and session.token_hash is not None:
        with server_ctx(request).db.session() as s:
            if account_for(s, session.token_hash) is not None:
                return RedirectResponse(safe_next(next), status_code=303)
    session = session if session is not None and session.token_hash is None else WebSession.new()
    response = page(
        "login.html",
        csrf=session.csrf,
        next=safe_next(next),
        error=None,
        signed_out=signed_out,
    )
    set_session(request, response, session)
    return response


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    session = read_session(request)
    if session is None or not session.csrf_ok(csrf_token):
        session = WebSession.new()
        response = page(
            "login.html",
            status=403,
            csrf=session.csrf,
            next=safe_next(next),
            error="The sign-in form expired (or cookies are off). Please try again.",
            signed_out=False,
        )
        set_session(request, response, session)
        return response
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    try:
        with server_ctx(request).db.session() as s:
            caller = authenticate(s, token) if token else None
    except Unauthorized:
        caller = None
    if caller is None or caller.kind != "user":
        return page(
            "login.html",
            status=401,
            csrf=session.csrf,
            next=safe_next(next),
            error="This token is not valid (or was revoked). Check it and try again.",
            signed_out=False,
        )
    redirect = RedirectResponse(safe_next(next), status_code=303)
    set_session(request, redirect, WebSession.new(hash_token(token)))
    return redirect


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = read_session(request)
    form = await request.form()
    given = form.get("csrf_token")
    if session is not None and not session.csrf_ok(given if isinstance(given, str) else None):
        raise ApiError("this form has expired: reload the page and try again", status=403)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    clear_session(response)
    return response


# --------------------------------------------------------------------------- task list


def _rows_html(user: WebUser, request: Request, state: str | None) -> tuple[str, int]:
    with server_ctx(request).db.session() as s:
        rows = queries.task_rows(s, user.id, state or None)
        html = render("_task_rows.html", rows=rows, state=state)
    return html, len(rows)


def _version(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
    return h.hexdigest()[:16]


@router.get("/")
def task_list(request: Request, user: Me, state: str = "") -> Response:
    state = state if state in STATES else ""
    html, count = _rows_html(user, request, state)
    return page(
        "tasks.html",
        user=user,
        csrf=user.csrf,
        nav="tasks",
        states=STATES,
        state=state,
        rows_html=html,
        count=count,
        version=_version(html),
    )


@router.get("/ui/api/tasks")
def task_list_json(request: Request, user: Me, state: str = "") -> dict[str, Any]:
    state = state if state in STATES else ""
    html, count = _rows_html(user, request, state)
    return {"rows": html, "count": count, "version": _version(html)}


# --------------------------------------------------------------------------- task page


def split_interval(seconds: int) -> tuple[int, str]:
    """An interval in its largest whole unit: 7200 → (2, "h")."""
    if seconds and seconds % 3600 == 0:
        return seconds // 3600, "h"
    if seconds and seconds % 60 == 0:
        return seconds // 60, "min"
    return seconds, "s"


def parse_interval(value: str, unit: str, field: str = "interval") -> int:
    value = value.strip()
    if unit not in UNITS:
        raise BadRequest(f"{field}: unknown unit {unit!r}; use s, min or h")
    if value == "":
        return 0
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not a number") from None
    seconds = number * UNITS[unit]
    if seconds < 0 or seconds != int(seconds) or seconds > 366 * 86400:
        raise BadRequest(f"{field}: use a whole, positive number of seconds (got {value} {unit})")
    return int(seconds)


def _fragments(request: Request, user: WebUser, task: Task, s: Any) -> dict[str, Any]:
    snaps = queries.snapshots_of(s, task.uuid)
    view = task_json(task)
    return {
        "summary": render("_task_summary.html", task=task, view=view),
        "snapshots": render(
            "_snapshot_rows.html",
            task=task,
            snapshots=list(reversed(snaps))[:SNAPSHOT_ROWS],
            hidden=max(0, len(snaps) - SNAPSHOT_ROWS),
        ),
        "chart": chart_svg(snaps, task.start_date),
        "count": len(snaps),
        "done": sum(1 for x in snaps if x.status == "Success"),
    }


def _task_flags(task: Task) -> dict[str, Any]:
    return {
        "state": task.state,
        "terminal": task.state in TERMINAL_STATES,
        "running": task.state in RUNNING_STATES,
        "interval": task.snapshot_interval,
    }


@router.get("/tasks/{task_uuid}")
def task_page(request: Request, task_uuid: str, user: Me, done: str = "") -> Response:
    with server_ctx(request).db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        events = last_event_id(s, task.uuid)  # before the logs: the stream follows on from here
        parts = _fragments(request, user, task, s)
        logs = {name: queries.log_tail(s, task.uuid, name) for name in ("stdout", "stderr")}
        amount, unit = split_interval(task.snapshot_interval)
        return page(
            "task.html",
            user=user,
            csrf=user.csrf,
            nav="tasks",
            task=task,
            flags=_task_flags(task),
            parts=parts,
            version=_version(parts["summary"], parts["snapshots"]),
            logs=logs,
            interval_amount=amount,
            interval_unit=unit,
            message=DONE_MESSAGES.get(done),
            events=events,
        )


@router.get("/ui/api/tasks/{task_uuid}")
def task_state_json(
    request: Request,
    task_uuid: str,
    user: Me,
    stdout: int = -1,
    stderr: int = -1,
    version: str = "",
) -> dict[str, Any]:
    """What the task page's script needs to refresh itself; HTML pieces only when changed."""
    with server_ctx(request).db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        parts = _fragments(request, user, task, s)
        current = _version(parts["summary"], parts["snapshots"])
        out: dict[str, Any] = {**_task_flags(task), "version": current}
        if current != version:
            out.update(parts)
        for name, offset in (("stdout", stdout), ("stderr", stderr)):
            if offset >= 0:
                text, end = queries.log_since(s, task.uuid, name, offset)
                out[name] = {"text": text, "offset": end}
        return out


def _done(request: Request, task_uuid: str, what: str, payload: dict[str, Any]) -> Response:
    if wants_json(request):
        return JSONResponse({"message": DONE_MESSAGES[what], **payload})
    return RedirectResponse(f"/tasks/{task_uuid}?done={what}", status_code=303)


@router.post("/tasks/{task_uuid}/snapshot")
async def snapshot_now(request: Request, task_uuid: str, user: Me) -> Response:
    form = await request.form()
    await check_csrf(request, user, form)
    label = str(form.get("label") or "").strip() or None
    check_label(label)

    def take() -> str:
        with server_ctx(request).db.session() as s:
            task = get_task(s, user.caller, task_uuid)
            if task.state not in RUNNING_STATES:
                raise Conflict(
                    f"this task is {task.state}: only a running task (FullyExecuting) "
                    "can be snapshotted"
                )
            return create_snapshot(s, task, kind="manual", label=label).id

    snap_id = await run_in_threadpool(take)
    return _done(request, task_uuid, "snapshot", {"id": snap_id})


@router.post("/tasks/{task_uuid}/periodic")
async def periodic(request: Request, task_uuid: str, user: Me) -> Response:
    form = await request.form()
    await check_csrf(request, user, form)
    stop = form.get("mode") == "stop"
    if stop:
        interval = 0
    else:
        interval = parse_interval(
            str(form.get("interval") or ""), str(form.get("unit") or "s"), "interval"
        )
    white = form.get("whitelist")
    black = form.get("blacklist")

    def apply() -> dict[str, Any]:
        with server_ctx(request).db.session() as s:
            task = get_task(s, user.caller, task_uuid)
            queries.set_periodic(
                s,
                server_ctx(request).settings,
                task,
                interval=interval,
                whitelist=None if stop or not isinstance(white, str) else white.strip(),
                blacklist=None if stop or not isinstance(black, str) else black.strip(),
            )
            return {
                "interval": task.snapshot_interval,
                "whitelist": task.snapshot_whitelist,
                "blacklist": task.snapshot_blacklist,
            }

    settings = await run_in_threadpool(apply)
    return _done(request, task_uuid, "stopped" if interval == 0 else "periodic", settings)


@router.post("/tasks/{task_uuid}/abort")
async def abort(request: Request, task_uuid: str, user: Me) -> Response:
    form = await request.form()
    await check_csrf(request, user, form)

    def apply() -> str:
        with server_ctx(request).db.session() as s:
            task = get_task(s, user.caller, task_uuid)
            request_abort(s, task)
            return task.state

    state = await run_in_threadpool(apply)
    return _done(request, task_uuid, "abort", {"state": state})
