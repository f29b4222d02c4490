"""A shell inside a running task, over the server's WebSocket ``/v1/tasks/{uuid}/shell``.

Opened by :meth:`hpcsnap.Task.shell`. The shell runs beside the task's command: in /job, with
its environment, as its user; what it saves under /job is captured by snapshots and results,
nothing else is. Frames: binary from the shell carry one channel byte (1 stdout, 2 stderr)
then the bytes; binary to it are stdin; text frames are JSON controls (``banner``, ``exit``
from the shell; ``open``, ``resize``, ``eof`` to it).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from hpcsnap.sdk import _http, errors

__all__ = ["ShellResult", "ShellSession"]

STDOUT, STDERR = 1, 2
_NOT_RUNNING = {409: errors.TaskNotRunningError}


@dataclass
class ShellResult:
    """What :meth:`ShellSession.communicate` collected."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    #: Why the session ended if not by the shell's own exit (e.g. "the task ended").
    reason: str | None


class ShellSession:
    """An open shell; a context manager (leaving it closes the shell and what it started).

    :meth:`read` gives ``(channel, bytes)`` pairs (:data:`STDOUT` or :data:`STDERR`) until the
    shell ends, then None; :attr:`exit_code` and :attr:`reason` are then known.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._lock = threading.Lock()
        self.banner: str | None = None
        self.exit_code: int | None = None
        self.reason: str | None = None
        self.ended = False

    @classmethod
    def open(
        cls,
        http: _http.Http,
        task_uuid: str,
        *,
        command: str | None = None,
        tty: bool = False,
        cols: int = 80,
        rows: int = 24,
        term: str | None = None,
        timeout: float = 60.0,
    ) -> ShellSession:
        """Connect, ask for the shell and wait (up to ``timeout`` s) for its banner."""
        base = http.settings.api_url
        scheme, rest = base.split("://", 1)
        url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}{_http.path('tasks', task_uuid)}"
        try:
            ws = connect(
                url + "/shell",
                additional_headers={
                    "Authorization": http.settings.token,
                    "User-Agent": _http.USER_AGENT,
                },
                user_agent_header=None,
                open_timeout=min(timeout, 30.0),
                max_size=2**20,
            )
        except InvalidStatus as exc:
            resp = httpx.Response(exc.response.status_code, content=bytes(exc.response.body or b""))
            raise _http.error_for(resp, _NOT_RUNNING) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise errors.ServerUnreachableError(
                f"cannot open a shell through {base}: {exc} (is the server running?)"
            ) from exc
        session = cls(ws)
        try:
            session._control("open", tty=tty, cols=cols, rows=rows, term=term, command=command)
            session._wait_banner(timeout)
        except BaseException:
            session.close()
            raise
        return session

    def __enter__(self) -> ShellSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ input

    def _control(self, kind: str, **fields: Any) -> None:
        self._send(json.dumps({"type": kind, **fields}))

    def _send(self, message: bytes | str) -> None:
        try:
            with self._lock:
                self._ws.send(message)
        except ConnectionClosed:
            pass  # the end is reported by read()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the shell's input."""
        if data:
            self._send(data)

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's new size (with ``tty=True``)."""
        self._control("resize", cols=cols, rows=rows)

    def eof(self) -> None:
        """End of input (closes the shell's stdin; ^D on a terminal)."""
        self._control("eof")

    # ------------------------------------------------------------------ output

    def _wait_banner(self, timeout: float) -> None:
        try:
            message = self._ws.recv(timeout=timeout)
        except TimeoutError as exc:
            raise errors.WaitTimeoutError(f"the shell did not open within {timeout:.0f} s") from exc
        except ConnectionClosed as exc:
            raise errors.HpcsnapError(f"the server closed the shell: {exc}") from exc
        if isinstance(message, str) and self._on_control(message) == "banner":
            return
        if self.ended:
            raise errors.HpcsnapError(f"the shell could not open: {self.reason}")
        raise errors.HpcsnapError(f"unexpected first frame from the shell: {message!r:.80}")

    def _on_control(self, text: str) -> str | None:
        try:
            message = json.loads(text)
            kind = message.get("type")
        except (ValueError, AttributeError):
            return None
        if kind == "banner":
            self.banner = str(message.get("text") or "")
        elif kind == "exit":
            code = message.get("code")
            self.exit_code = code if isinstance(code, int) else None
            self.reason = message.get("reason")
            self.ended = True
        return str(kind)

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """The shell's next output, as ``(channel, data)``; None once the session ended.

        Raises ``TimeoutError`` if nothing came within ``timeout`` seconds.
        """
        while not self.ended:
            try:
                message = self._ws.recv(timeout=timeout)
            except ConnectionClosed as exc:
                self.ended = True
                if self.reason is None and self.exit_code is None:
                    self.reason = f"the connection was closed ({exc})"
                return None
            if isinstance(message, bytes):
                if message:
                    return message[0], message[1:]
            else:
                self._on_control(message)
        return None

    def communicate(self, data: bytes = b"", *, timeout: float | None = None) -> ShellResult:
        """Send ``data`` then end of input; collect the output until the shell ends."""
        self.write(data)
        self.eof()
        out: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        while (chunk := self.read(timeout)) is not None:
            out.setdefault(chunk[0], []).append(chunk[1])
        return ShellResult(
            b"".join(out[STDOUT]), b"".join(out[STDERR]), self.exit_code, self.reason
        )

    def close(self) -> None:
        """Close the connection: the shell and every process it started are killed."""
        self._ws.close()
