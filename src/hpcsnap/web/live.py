"""The task page's live feed: the task's event stream (Server-Sent Events) for the signed-in
user, so that the page's ``EventSource`` (which cannot send an API token) follows it with the
session cookie. Same events, cursor and ownership rules as ``GET /v1/tasks/{uuid}/events``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from hpcsnap.server.api.events import HEARTBEAT, events_response
from hpcsnap.web.deps import Me, WebRoute, server_ctx

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/ui/api/tasks/{task_uuid}/events")
async def task_events(
    request: Request,
    task_uuid: str,
    user: Me,
    after: int = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    answer = await events_response(
        server_ctx(request),
        user.caller,
        task_uuid,
        request,
        after=after,
        last_event_id=last_event_id,
        as_json=False,
        wait=0,
        heartbeat=HEARTBEAT,
    )
    assert isinstance(answer, Response)
    return answer
