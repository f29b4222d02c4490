"""The relay of ``hpcsnap shell``: pairs a user's WebSocket with its task agent's, in memory.

A user's socket opens a :class:`Session` and wakes the task's agent (its long-poll answers with
the request, see :func:`offer`); the agent connects back to its own route and
:func:`relay` copies frames both ways, unchanged (their meaning is in
:mod:`hpcsnap.agent.shell`), until either side leaves, then closes the other.

The sessions live in this process only: with several servers behind one address, the agent's
long-poll and both sockets of a session must reach the same server (sticky routing by task
uuid), otherwise the user is told that the agent did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from hpcsnap.agent.protocol import ShellRequest
from hpcsnap.server import notify
from hpcsnap.server.errors import ApiError

#: Shells open (or waiting for their agent) at once in one task.
MAX_PER_TASK = 4
#: How long a user waits for the agent to connect back.
AGENT_TIMEOUT = 30.0
#: A request the agent was given but did not take up is offered again after this long.
REOFFER_AFTER = 10.0

Message = MutableMapping[str, Any]


@dataclass(eq=False)
class Session:
    request: ShellRequest
    task_uuid: str
    agent: asyncio.Future[WebSocket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    offered_at: float | None = None


_sessions: dict[str, Session] = {}


def too_many(task_uuid: str) -> ApiError:
    return ApiError(
        f"task {task_uuid} has {MAX_PER_TASK} shells open already, the most at once", status=429
    )


def open_session(task_uuid: str, request: dict[str, Any]) -> Session:
    """Register a session for ``task_uuid`` and wake its agent (from the event loop)."""
    if count(task_uuid) >= MAX_PER_TASK:
        raise too_many(task_uuid)
    sid = secrets.token_hex(12)
    session = Session(ShellRequest(id=sid, **request), task_uuid)
    _sessions[sid] = session
    notify.wake(task_uuid)
    return session


def count(task_uuid: str) -> int:
    return sum(1 for s in _sessions.values() if s.task_uuid == task_uuid)


def close_session(session: Session) -> None:
    _sessions.pop(session.request.id, None)
    session.finished.set()


def _due(task_uuid: str, now: float) -> list[Session]:
    return [
        s
        for s in _sessions.values()
        if s.task_uuid == task_uuid
        and not s.agent.done()
        and (s.offered_at is None or now - s.offered_at > REOFFER_AFTER)
    ]


def due(task_uuid: str) -> bool:
    """Whether :func:`offer` has a request for the task's agent now."""
    return bool(_due(task_uuid, time.monotonic()))


def offer(task_uuid: str) -> list[ShellRequest]:
    """The requests the task's agent should take up now (for its long-poll)."""
    now = time.monotonic()
    found = _due(task_uuid, now)
    for s in found:
        s.offered_at = now
    return [s.request for s in found]


def waiting(task_uuid: str, sid: str) -> bool:
    """Whether session ``sid`` of ``task_uuid`` waits for its agent."""
    session = _sessions.get(sid)
    return session is not None and session.task_uuid == task_uuid and not session.agent.done()


def attach(task_uuid: str, sid: str, ws: WebSocket) -> Session | None:
    """Hand the agent's socket to its waiting session (None if there is no such session)."""
    if not waiting(task_uuid, sid):
        return None
    session = _sessions[sid]
    session.agent.set_result(ws)
    return session


async def _send(ws: WebSocket, message: Message) -> None:
    if message.get("bytes") is not None:
        await ws.send_bytes(message["bytes"])
    elif message.get("text") is not None:
        await ws.send_text(message["text"])


async def _close(ws: WebSocket, code: int = 1000, reason: str = "") -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.close(code, reason)


async def _exit(ws: WebSocket, reason: str) -> None:
    """Tell the user why the session ends when the agent cannot."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.send_text(json.dumps({"type": "exit", "code": None, "reason": reason}))
    await _close(ws, 1011, "shell ended")


async def _read(ws: WebSocket, queue: asyncio.Queue[Message | None]) -> None:
    """Queue ``ws``'s frames; None when it disconnects."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            await queue.put(message)
    except (RuntimeError, WebSocketDisconnect):
        pass
    await queue.put(None)


async def relay(session: Session, user: WebSocket) -> None:
    """Serve one session from the user's side until either side leaves."""
    from_user: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=256)
    reader = asyncio.create_task(_read(user, from_user))
    try:
        waiting: set[asyncio.Future[Any]] = {session.agent, reader}
        done, _ = await asyncio.wait(
            waiting, timeout=AGENT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if reader in done:  # the user left before the agent came
            return
        if session.agent not in done:
            await _exit(
                user,
                f"the task's agent did not answer within {AGENT_TIMEOUT:.0f} s (is the task "
                "still running? with several servers, its agent may be polling another one)",
            )
            return
        agent = session.agent.result()
        await _pair(user, agent, from_user)
    finally:
        reader.cancel()
        close_session(session)


async def _pair(
    user: WebSocket,
    agent: WebSocket,
    from_user: asyncio.Queue[Message | None],
) -> None:
    exited = False

    async def to_agent() -> None:
        while (message := await from_user.get()) is not None:
            await _send(agent, message)

    async def to_user() -> None:
        nonlocal exited
        while True:
            message = await agent.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and '"exit"' in text:
                with contextlib.suppress(ValueError, AttributeError):
                    exited = exited or json.loads(text).get("type") == "exit"
            await _send(user, message)

    up = asyncio.create_task(to_agent())
    down = asyncio.create_task(to_user())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
    # whichever side left, the other one is closed
    failed = {t for t in done if not t.cancelled() and t.exception() is not None}
    user_left = up in done and up not in failed
    if not user_left:
        if exited:
            await _close(user)
        else:
            await _exit(user, "the connection to the task's agent was lost")
    await _close(agent)
