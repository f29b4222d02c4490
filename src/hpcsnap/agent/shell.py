"""Shells inside a running task (``hpcsnap shell``), relayed through the server.

The user's WebSocket ends at the server, which wakes this agent's long-poll with a
:class:`~hpcsnap.agent.protocol.ShellRequest`; the agent then connects OUT to
``/v1/agent/tasks/<uuid>/shell/<id>`` (so this works from a Slurm node) and the server relays
the frames both ways, unchanged. The frames:

=================  ============================================================================
user -> agent      binary: bytes for the shell's stdin; text (JSON): ``{"type": "resize",
                   "cols": C, "rows": R}``, ``{"type": "eof"}`` (end of the user's input)
agent -> user      binary: one channel byte (1 stdout, 2 stderr) then the output; text (JSON):
                   ``{"type": "banner", "text": ...}`` first, ``{"type": "exit", "code": N,
                   "reason": ...}`` last (``code`` null if the shell was killed)
=================  ============================================================================

The shell runs beside the command (:meth:`~hpcsnap.agent.sandbox.Sandbox.enter`): same mount
and PID namespaces, cwd /job, the command's environment, as the task user. With ``tty`` it gets
a pseudo-terminal (sized and resized by the user); without, plain pipes, stdout and stderr
apart. A session ends, killing every process the shell started (its session and descendants),
when the user disconnects, when the shell exits, or when the task ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hpcsnap.agent.protocol import ShellRequest
from hpcsnap.agent.sandbox import ROOT_ENV, Sandbox, carried, restorer, tool

log = logging.getLogger(__name__)

#: Shells open at once in one task: the server allows 4, this bounds what it could ask for,
#: with room for sessions still closing.
MAX_SHELLS = 8
STDOUT, STDERR = b"\x01", b"\x02"
_CHUNK = 65536


def banner(name: str, uuid: str, job: str) -> str:
    return (
        f"Connected to task {name} ({uuid}) in {job}. Files you save under {job} are captured "
        "by snapshots and results; files saved elsewhere are not captured and may be lost when "
        "the task ends."
    )


def _program() -> str:
    return "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"


def _processes() -> dict[int, tuple[int, int]]:
    """Every process: pid -> (parent pid, session id)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def _descendants(table: dict[int, tuple[int, int]], root: int) -> set[int]:
    found = {root} if root in table else set()
    grew = bool(found)
    while grew:
        grew = False
        for pid, (ppid, _sid) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def session_leaders(root: int) -> set[int]:
    """The sessions led by ``root`` or one of its descendants (the shell's, once it runs)."""
    table = _processes()
    return {pid for pid in _descendants(table, root) if table[pid][1] == pid}


def family(root: int, sessions: set[int]) -> set[int]:
    """``root``, its descendants, and every process of ``sessions`` (orphans included)."""
    table = _processes()
    found = _descendants(table, root)
    found |= {pid for pid, (_ppid, sid) in table.items() if sid in sessions}
    found.discard(os.getpid())
    return found


class ShellSession:
    """One shell and its connection to the relay."""

    def __init__(
        self,
        manager: ShellManager,
        request: ShellRequest,
    ) -> None:
        self.manager = manager
        self.request = request
        self.stop = threading.Event()
        self.reason: str | None = None
        self._send_lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._master: int | None = None
        self._sids: set[int] = set()
        self._ended = False
        self.thread = threading.Thread(target=self._run, name=f"shell-{request.id}", daemon=True)

    # -- the connection ----------------------------------------------------------------------

    def _send(self, message: bytes | str) -> bool:
        assert self._ws is not None
        try:
            with self._send_lock:
                self._ws.send(message)
        except (ConnectionClosed, OSError):
            self.stop.set()
            return False
        return True

    def _control(self, kind: str, **fields: Any) -> bool:
        return self._send(json.dumps({"type": kind, **fields}))

    def _run(self) -> None:
        url = self.manager.url(f"/shell/{self.request.id}")
        try:
            ws = connect(
                url,
                additional_headers={"Authorization": self.manager.token},
                open_timeout=15,
                max_size=2**20,
            )
        except Exception as exc:
            log.error("shell %s: could not reach the relay: %s", self.request.id, exc)
            return
        self._ws = ws
        try:
            self._serve()
        except Exception as exc:
            log.exception("shell %s failed", self.request.id)
            self._control("exit", code=None, reason=f"the shell failed: {exc}")
        finally:
            self._end()
            ws.close()
            self.manager.forget(self)

    # -- the shell -----------------------------------------------------------------------------

    def _spawn(self) -> tuple[subprocess.Popen[bytes], list[tuple[bytes, int]]]:
        req = self.request
        program = _program()
        shell = [program, "-c", req.command] if req.command is not None else [program]
        env = dict(self.manager.env)
        # an interactive bash would write ~/.bash_history, that is into /job (HOME)
        env["HISTFILE"] = ""
        if req.term:
            env["TERM"] = req.term
        box = self.manager.box
        # setsid: a session of its own (--ctty: with the pty as its controlling terminal)
        setsid = [tool("setsid"), "--ctty", "--"] if req.tty else [tool("setsid"), "--"]
        # the task's variables reach the shell as the command's do (see Sandbox.launch): root's
        # nsenter, env and setpriv see them only under an inert prefix
        loader = ["/bin/sh", "-c", restorer(env, then='exec "$@"'), "hpcsnap-shell", *shell]
        argv, cwd = box.enter(self.manager.task, [*setsid, *loader])
        spawn_env = {**ROOT_ENV, **carried(env)}
        if req.tty:
            master, slave = os.openpty()
            self._master = master
            _resize(master, req.cols, req.rows)
            try:
                if box.mode == "namespace":
                    os.fchown(slave, box.uid, -1)
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=spawn_env, stdin=slave, stdout=slave, stderr=slave
                )
            finally:
                os.close(slave)
            return proc, [(STDOUT, master)]
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=spawn_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        return proc, [(STDOUT, proc.stdout.fileno()), (STDERR, proc.stderr.fileno())]

    def _serve(self) -> None:
        job = self.manager.box.visible_job
        if not self._control("banner", text=banner(self.request.task_name, self.manager.uuid, job)):
            return
        proc, outputs = self._spawn()
        self._proc = proc
        readers = [
            threading.Thread(target=self._pump_out, args=(ch, src), daemon=True)
            for ch, src in outputs
        ]
        for t in readers:
            t.start()
        threading.Thread(target=self._pump_in, daemon=True).start()
        while proc.poll() is None and not self.stop.is_set():
            if not self._sids:
                # learnt while the shell runs, to find what it leaves behind when it ends
                self._sids = session_leaders(proc.pid)
            self.stop.wait(0.1)
        self._end()
        for t in readers:
            t.join(5)
        code = proc.returncode
        reason = self.reason
        if reason is None and self.manager.task_ended():
            reason = "the task ended"
        if code is not None and code < 0:
            code = 128 - code
        self._control("exit", code=None if reason else code, reason=reason)

    def _pump_out(self, channel: bytes, source: int) -> None:
        while True:
            try:
                data = os.read(source, _CHUNK)
            except OSError:  # EIO: the pty's last user is gone
                data = b""
            if not data:
                return
            if not self._send(channel + data):
                return

    def _pump_in(self) -> None:
        assert self._ws is not None and self._proc is not None
        try:
            for message in self._ws:
                if isinstance(message, bytes):
                    self._write(message)
                else:
                    self._on_control(message)
        except ConnectionClosed:
            pass
        except OSError as exc:
            log.info("shell %s: input: %s", self.request.id, exc)
        # the user (or the relay) went away
        self.stop.set()

    def _write(self, data: bytes) -> None:
        assert self._proc is not None
        if self._master is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._master, view) :]
        elif self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _on_control(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message.get("type")
        except (ValueError, AttributeError):
            return
        if kind == "resize" and self._master is not None:
            with contextlib.suppress(TypeError, ValueError, OSError):
                _resize(self._master, int(message["cols"]), int(message["rows"]))
        elif kind == "eof":
            if self._master is not None:
                self._write(b"\x04")
            elif self._proc is not None and self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()

    def _end(self) -> None:
        """Kill the shell and everything it started; idempotent."""
        proc = self._proc
        if proc is None or self._ended:
            return
        self._ended = True
        for sig in (signal.SIGHUP, signal.SIGKILL):
            targets = family(proc.pid if proc.poll() is None else -1, self._sids)
            if not targets:
                break
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and (proc.poll() is None or family(-1, self._sids)):
                time.sleep(0.02)
        proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()


def _resize(fd: int, cols: int, rows: int) -> None:
    cols, rows = max(1, min(cols, 10000)), max(1, min(rows, 10000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ShellManager:
    """The task's open shells: at most :data:`MAX_SHELLS`, each on a thread of its own."""

    def __init__(
        self,
        *,
        box: Sandbox,
        task: subprocess.Popen[bytes],
        env: Mapping[str, str],
        uuid: str,
        url: Callable[[str], str],
        token: str,
    ) -> None:
        self.box = box
        self.task = task
        self.env = dict(env)
        self.uuid = uuid
        self.url = url
        self.token = token
        self._lock = threading.Lock()
        self._sessions: dict[str, ShellSession] = {}
        self._seen: set[str] = set()
        self._closed = False

    def task_ended(self) -> bool:
        return self._closed or self.task.poll() is not None

    def open(self, request: ShellRequest) -> None:
        with self._lock:
            if self._closed or request.id in self._seen:
                return
            if len(self._sessions) >= MAX_SHELLS:
                log.warning("shell %s refused: %d shells already open", request.id, MAX_SHELLS)
                return
            self._seen.add(request.id)
            session = ShellSession(self, request)
            self._sessions[request.id] = session
        log.info("opening shell %s", request.id)
        session.thread.start()

    def forget(self, session: ShellSession) -> None:
        with self._lock:
            self._sessions.pop(session.request.id, None)
        log.info("shell %s closed", session.request.id)

    def close_all(self, reason: str, *, timeout: float = 10.0) -> None:
        """End every session (telling its user ``reason``) and wait for them."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close(reason)
        deadline = time.monotonic() + timeout
        for session in sessions:
            session.thread.join(max(0.0, deadline - time.monotonic()))
