"""A size limit on request bodies that the API reads whole (JSON, forms).

Uploads (``PUT /v1/buckets/.../files/...``, the S3 endpoint, the web form's files at
``/tasks/new``) stream to disk and are exempt, as are agents' reports (a 100,000-file snapshot
manifest is large, and agents hold a credential).
A body over the limit is answered ``413`` with a message: at once when its ``Content-Length``
says so (after reading and dropping at most :data:`DRAIN` bytes, so that the client gets the
answer rather than a reset connection), else as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_LIMIT = 8 << 20
"""Bytes of a JSON or form body (8 MiB: thousands of tasks in one bulk submission)."""

DRAIN = 64 << 20
"""Bytes of a too-large body read (and dropped) before answering 413."""

_EXEMPT = re.compile(r"^(?:/v1/buckets/[^/]+/files/.+|/v1/agent/.*|/tasks/new)$")


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes ({limit >> 20} MiB) here"


class BodyLimit:
    """ASGI middleware enforcing ``limit`` on the request bodies of non-exempt routes."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _EXEMPT.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive, int(declared))
            await self._refuse(send)
            return
        received = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _drain(receive: Receive, declared: int) -> None:
        if declared > DRAIN:
            return
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"message": too_large(self.limit)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
