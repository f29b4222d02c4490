"""``hpcsnap shell``: the user's WebSocket ``/tasks/{uuid}/shell`` and its agent's end,
``/agent/tasks/{uuid}/shell/{id}``; the relay between them is :mod:`hpcsnap.server.shells`.

Both authenticate with the ``Authorization`` header and are refused before the WebSocket is
accepted, with an HTTP answer ``{"message": ...}``: 401 (no or bad token), 404 (no such task,
or not the caller's), 409 (the task's command is not running, or it has too many shells).
Once accepted, the user's first frame is text, ``{"type": "open", "tty": bool, "cols": C,
"rows": R, "term": "xterm-256color", "command": "..." | null}``; the frames after it are
relayed to the agent unchanged (see :mod:`hpcsnap.agent.shell`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Literal

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from hpcsnap.agent.protocol import RUNNING_STATES, TaskState
from hpcsnap.server import shells
from hpcsnap.server.api.deps import get_caller
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.auth import Caller
from hpcsnap.server.context import ServerContext
from hpcsnap.server.errors import ApiError, Conflict, NotFound

router = APIRouter()

#: How long the user's socket may stay silent before its ``open`` frame.
OPEN_TIMEOUT = 10.0


class ShellOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["open"]
    tty: bool = False
    cols: int = Field(default=80, ge=1, le=10000)
    rows: int = Field(default=24, ge=1, le=10000)
    term: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._+-]{1,64}$")
    command: str | None = Field(default=None, max_length=65536)


async def _refuse(ws: WebSocket, exc: ApiError) -> None:
    """Answer the handshake with an HTTP error (a close code 4000+status where the server
    cannot send one)."""
    try:
        await ws.send_denial_response(
            JSONResponse({"message": exc.message}, status_code=exc.status)
        )
    except RuntimeError:
        await ws.close(code=4000 + exc.status, reason=exc.message[:120])


async def _caller(ws: WebSocket) -> Caller:
    ctx: ServerContext = ws.app.state.ctx
    caller: Caller = await run_in_threadpool(get_caller, ctx, ws.headers.get("authorization"))
    return caller


def _running_task(ctx: ServerContext, caller: Caller, task_uuid: str) -> str:
    with ctx.db.session() as session:
        task = get_task(session, caller, task_uuid)
        if task.state not in RUNNING_STATES:
            raise Conflict(
                f"task {task_uuid} is {task.state}: a shell opens only while its command runs "
                f"({TaskState.EXECUTING})"
            )
        return task.name


@router.websocket("/tasks/{task_uuid}/shell")
async def user_shell(websocket: WebSocket, task_uuid: str) -> None:
    """A shell in the caller's running task (``hpcsnap shell``)."""
    ctx: ServerContext = websocket.app.state.ctx
    try:
        caller = await _caller(websocket)
        if caller.kind != "user":
            raise NotFound(f"task {task_uuid} not found")
        name = await run_in_threadpool(_running_task, ctx, caller, task_uuid)
        if shells.count(task_uuid) >= shells.MAX_PER_TASK:
            raise shells.too_many(task_uuid)
    except ApiError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    try:
        first = await asyncio.wait_for(websocket.receive(), OPEN_TIMEOUT)
        opening = ShellOpen.model_validate_json(first.get("text") or "")
    except (TimeoutError, ValidationError, WebSocketDisconnect, RuntimeError) as exc:
        problem = f"expected an 'open' frame first: {exc}".replace("\n", " ")
        await _end(websocket, problem)
        return
    request = opening.model_dump(exclude={"type"})
    try:
        session = shells.open_session(task_uuid, {"task_name": name, **request})
    except ApiError as exc:
        await _end(websocket, exc.message)
        return
    await shells.relay(session, websocket)


async def _end(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.send_text(json.dumps({"type": "exit", "code": None, "reason": reason}))
        await ws.close(1008, "shell refused")


@router.websocket("/agent/tasks/{task_uuid}/shell/{session_id}")
async def agent_shell(websocket: WebSocket, task_uuid: str, session_id: str) -> None:
    """The agent's end of a session it was offered by its long-poll."""
    try:
        caller = await _caller(websocket)
        if caller.kind != "agent" or caller.task_uuid != task_uuid:
            raise NotFound(f"task {task_uuid} not found")
        if not shells.waiting(task_uuid, session_id):
            raise NotFound(f"no shell {session_id} waiting in task {task_uuid}")
    except ApiError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    session = shells.attach(task_uuid, session_id, websocket)
    if session is None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(1008, "the user left")
        return
    await session.finished.wait()
