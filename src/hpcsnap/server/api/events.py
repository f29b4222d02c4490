"""A task's event stream (``GET /tasks/{uuid}/events``): Server-Sent Events, or JSON long-poll.

The events are :mod:`hpcsnap.server.events`. No database session is held while waiting: each
look is a short session in a worker thread; between looks the request waits for the in-process
wake-up of its task (:mod:`hpcsnap.server.notify`) or :data:`POLL` seconds, whichever comes
first (the period lets several servers share one database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hpcsnap.agent.protocol import TERMINAL_STATES
from hpcsnap.server import notify
from hpcsnap.server.api.deps import Ctx, User
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.auth import Caller
from hpcsnap.server.context import ServerContext
from hpcsnap.server.errors import BadRequest, NotFound
from hpcsnap.server.events import read_events, wake_key

router = APIRouter(tags=["tasks"])

#: Seconds between two looks at the database while nothing wakes the request.
POLL = 0.5
#: Events sent per look at most (a long task catching up reads several pages).
PAGE = 500
#: The longest ``wait`` of the JSON long-poll.
MAX_WAIT = 30.0
#: Default seconds of silence after which an SSE stream sends a comment line.
HEARTBEAT = 15.0
#: Reconnection delay proposed to SSE clients (milliseconds).
RETRY_MS = 2000


@dataclass
class Batch:
    """One look at the stream: events after the cursor and whether the stream is over."""

    events: list[dict[str, Any]] = field(default_factory=list)
    #: The task has ended (or is gone) and ``events`` reach the end of its stream.
    done: bool = False

    def last(self, after: int) -> int:
        return int(self.events[-1]["id"]) if self.events else after


def look(ctx: ServerContext, caller: Caller, task_uuid: str, after: int) -> Batch:
    """The caller's task's events after ``after`` (404 for a task that is not theirs)."""
    with ctx.db.session() as session:
        # the state first: an end committed after this read has its events read below
        task = get_task(session, caller, task_uuid)
        ended = task.state in TERMINAL_STATES
        events = read_events(session, task_uuid, after, PAGE)
        return Batch(events, ended and len(events) < PAGE)


async def _look(ctx: ServerContext, caller: Caller, task_uuid: str, after: int) -> Batch:
    return await run_in_threadpool(look, ctx, caller, task_uuid, after)


async def _nap(woken: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(woken.wait(), timeout=max(0.0, seconds))


async def long_poll(
    ctx: ServerContext,
    caller: Caller,
    task_uuid: str,
    after: int,
    wait: float,
    request: Request | None = None,
) -> Batch:
    """The events after ``after``, as soon as there is one, or none after ``wait`` seconds
    (or once the client has gone)."""
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    with notify.subscribe(wake_key(task_uuid)) as woken:
        while True:
            woken.clear()
            batch = await _look(ctx, caller, task_uuid, after)
            left = deadline - time.monotonic()
            if batch.events or batch.done or left <= 0:
                return batch
            if request is not None and await request.is_disconnected():
                return batch
            await _nap(woken, min(POLL, left))


def sse_message(event: dict[str, Any]) -> str:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


async def sse_stream(
    ctx: ServerContext,
    caller: Caller,
    task_uuid: str,
    first: Batch,
    after: int,
    heartbeat: float,
) -> AsyncIterator[str]:
    """``first`` and every later event; a comment line after ``heartbeat`` seconds of silence;
    ends after the task's ``end`` event (or when the task is deleted)."""
    yield f"retry: {RETRY_MS}\n\n"
    batch = first
    with notify.subscribe(wake_key(task_uuid)) as woken:
        quiet_since = time.monotonic()
        while True:
            if batch.events:
                yield "".join(sse_message(e) for e in batch.events)
                after = batch.last(after)
                quiet_since = time.monotonic()
            if batch.done:
                return
            if len(batch.events) < PAGE:  # caught up: wait for news
                silent = time.monotonic() - quiet_since
                if silent >= heartbeat:
                    yield ": keep-alive\n\n"
                    quiet_since, silent = time.monotonic(), 0.0
                await _nap(woken, min(POLL, heartbeat - silent))
            woken.clear()
            try:
                batch = await _look(ctx, caller, task_uuid, after)
            except NotFound:  # deleted while followed
                return


def parse_cursor(after: int, last_event_id: str | None) -> int:
    """``Last-Event-ID`` (sent by a reconnecting EventSource) wins over ``after``."""
    if last_event_id is None or not last_event_id.strip():
        return max(0, after)
    try:
        return max(0, int(last_event_id.strip()))
    except ValueError:
        raise BadRequest(
            f"Last-Event-ID: {last_event_id!r} is not an event id (a whole number)"
        ) from None


async def events_response(
    ctx: ServerContext,
    caller: Caller,
    task_uuid: str,
    request: Request,
    *,
    after: int,
    last_event_id: str | None,
    as_json: bool,
    wait: float,
    heartbeat: float,
) -> Response | dict[str, Any]:
    """What the API route and the web page's stream answer (errors are raised before the
    stream starts: 404 for a task that is not the caller's)."""
    cursor = parse_cursor(after, last_event_id)
    if as_json:
        batch = await long_poll(ctx, caller, task_uuid, cursor, wait, request)
        return {"events": batch.events, "last": batch.last(cursor), "done": batch.done}
    first = await _look(ctx, caller, task_uuid, cursor)
    if first.done and not first.events:
        # nothing will ever come: 204 also tells an EventSource not to reconnect
        return Response(status_code=204)
    return StreamingResponse(
        sse_stream(ctx, caller, task_uuid, first, cursor, min(max(heartbeat, 1.0), 300.0)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/tasks/{task_uuid}/events", response_model=None)
async def task_events(
    task_uuid: str,
    ctx: Ctx,
    user: User,
    request: Request,
    after: int = 0,
    format: str = "sse",
    wait: float = 0,
    heartbeat: float = HEARTBEAT,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response | dict[str, Any]:
    """The task's events after id ``after`` (or ``Last-Event-ID``), oldest first.

    By default a ``text/event-stream`` (``id:`` and ``event:`` per event, a comment line after
    ``heartbeat`` seconds of silence) that ends after the task's ``end`` event; 204 if the task
    has ended and nothing follows the cursor. With ``format=json``: ``{"events", "last",
    "done"}`` as soon as there is an event, or after ``wait`` seconds (at most 30) without one;
    call again with ``after=last`` until ``done``.
    """
    if format not in ("sse", "json"):
        raise BadRequest(f"format: {format!r} is not one of sse, json")
    return await events_response(
        ctx,
        user,
        task_uuid,
        request,
        after=after,
        last_event_id=last_event_id,
        as_json=format == "json",
        wait=wait,
        heartbeat=heartbeat,
    )
