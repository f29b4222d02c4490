"""Snapshots requested from inside the running job, through a Unix socket in /job.

The job connects to ``$HPCSNAP_JOB_SOCKET`` (``/job/.hpcsnap.sock``) and sends one JSON line,
``{"label": "mesh-done", "wait": true}``; the answer is one JSON line with the snapshot's id,
status, directory and error. ``hpcsnap job snapshot`` is the command-line client. Only processes
of this task can reach the socket (it lives in the task's own directory).
The client side is :mod:`hpcsnap.agent.jobclient`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from hpcsnap.agent.client import ServerRefused
from hpcsnap.agent.snapshots import Snapshotter

log = logging.getLogger(__name__)

SOCKET_NAME = ".hpcsnap.sock"
MAX_REQUEST = 64 * 1024


class JobSocket:
    def __init__(self, path: Path, snapshotter: Snapshotter, *, uid: int, gid: int) -> None:
        self.path = path
        self.snapshotter = snapshotter
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Bind through the directory's fd: the task dir's real path may exceed AF_UNIX's 108 bytes.
        dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            self._sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
        finally:
            os.close(dir_fd)
        os.chmod(path, 0o660)
        os.lchown(path, uid, gid)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, name="job-socket", daemon=True)

    def start(self) -> JobSocket:
        self._thread.start()
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                reply = self.answer(self._read_line(conn))
            except Exception as exc:
                reply = {"status": "Failure", "error": str(exc)}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    @staticmethod
    def _read_line(conn: socket.socket) -> dict[str, Any]:
        conn.settimeout(10)
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        request = json.loads(data.split(b"\n", 1)[0] or b"{}")
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        return request

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        label = request.get("label")
        if label is not None and not isinstance(label, str):
            raise ValueError("label must be a string")
        try:
            snap, job = self.snapshotter.open_and_submit("job", label)
        except ServerRefused as exc:
            return {"status": "Failure", "error": exc.message}
        reply: dict[str, Any] = {"id": snap.id, "directory": snap.directory, "status": "Triggered"}
        if job is not None and request.get("wait", True):
            job.done.wait()
            reply.update(status="Success" if job.ok else "Failure", error=job.error)
        return reply
