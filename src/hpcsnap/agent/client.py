"""The agent's side of the agent API: retries through server restarts, never gives up a report."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from pydantic import BaseModel

from hpcsnap.agent.protocol import dump

log = logging.getLogger(__name__)


class ServerRefused(Exception):
    """The server answered 4xx: the request itself is wrong, retrying will not help."""

    def __init__(self, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        #: The other fields of the JSON answer (e.g. ``missingDigests``).
        self.details = details or {}

    @property
    def missing_digests(self) -> list[str]:
        """The blobs a refused commit references that are no longer stored (freed by garbage
        collection since this agent stored them): store them again, then retry."""
        found = self.details.get("missingDigests") if self.status == 409 else None
        return [str(d) for d in found] if isinstance(found, list) else []

    @property
    def base_changed(self) -> bool:
        """A delta commit was refused because its parent no longer holds the keys it
        published: send every key instead."""
        return self.status == 409 and self.details.get("baseChanged") is True


class CredentialRevoked(ServerRefused):
    """401: the task's credential was revoked (the server ended the task)."""


class ServerUnreachable(Exception):
    """No answer within the time allowed for this call."""


class AgentClient:
    """Calls ``/v1/agent/tasks/<uuid>/...`` with the task's credential.

    Connection errors and 5xx answers are retried with exponential backoff (capped at
    ``max_backoff`` seconds) for up to ``patience`` seconds (None: for ever), so a server restart
    only delays reports.
    """

    def __init__(
        self, server: str, task_uuid: str, token: str, *, max_backoff: float = 5.0
    ) -> None:
        self.base = f"{server.rstrip('/')}/v1/agent/tasks/{task_uuid}"
        self.token = token
        self.max_backoff = max_backoff
        self._http = httpx.Client(
            headers={"Authorization": token}, timeout=httpx.Timeout(60.0, connect=5.0)
        )

    def close(self) -> None:
        self._http.close()

    def websocket_url(self, path: str) -> str:
        """The ``ws://`` (``wss://``) URL of ``path`` under this task's agent routes."""
        scheme, rest = self.base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"

    def call(
        self,
        method: str,
        path: str,
        body: BaseModel | dict[str, Any] | bytes | list[bytes] | None = None,
        *,
        params: dict[str, Any] | None = None,
        patience: float | None = None,
        timeout: float | None = None,
    ) -> Any:
        """``body``: a model or dict sent as JSON, or JSON already encoded: bytes, or a list of
        pieces sent one after the other (never joined into one copy)."""
        payload = dump(body) if isinstance(body, BaseModel) else body
        raw = [payload] if isinstance(payload, bytes) else payload
        if not isinstance(raw, list):
            raw = None
        deadline = None if patience is None else time.monotonic() + patience
        delay = 0.2
        while True:
            try:
                resp = self._http.request(
                    method,
                    self.base + path,
                    json=None if raw is not None else payload,
                    content=iter(raw) if raw is not None else None,
                    headers=(
                        {
                            "Content-Type": "application/json",
                            "Content-Length": str(sum(len(p) for p in raw)),
                        }
                        if raw is not None
                        else None
                    ),
                    params=params,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp.json() if resp.content else None
                message = _message(resp)
                if resp.status_code == 401:
                    raise CredentialRevoked(401, message)
                if resp.status_code < 500 and resp.status_code != 429:
                    raise ServerRefused(resp.status_code, message, _details(resp))
                problem = f"HTTP {resp.status_code}: {message}"
            if deadline is not None and time.monotonic() + delay > deadline:
                raise ServerUnreachable(f"{method} {path}: {problem}")
            log.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)


def _details(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(data, dict):
        return str(data.get("message") or data)
    return str(data)
