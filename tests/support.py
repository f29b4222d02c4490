"""Test support: start/stop a real ``hpcsnap serve`` process and talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hpcsnap.sdk import Connection

REPO = Path(__file__).resolve().parent.parent
TERMINAL = {"Success", "Failure", "Cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hpcsnap(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``hpcsnap`` entry point."""
    exe = Path(sys.executable).parent / "hpcsnap"
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=120,
    )


class Api:
    """A tiny HTTP helper bound to one user's token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token
        headers = {"Authorization": token} if token else {}
        self.http = httpx.Client(base_url=base + "/v1", headers=headers, timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def ok(self, method: str, url: str, **kw: Any) -> Any:
        resp = self.http.request(method, url, **kw)
        assert resp.status_code < 300, f"{method} {url}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    def submit(self, command: str, **fields: Any) -> str:
        body = {
            "name": fields.pop("name", "t"),
            "profile": "docker-batch",
            "constants": [{"key": "DOCKER_CMD", "value": command}],
            **fields,
        }
        return str(self.ok("POST", "/tasks", json=body)["uuid"])

    def task(self, uuid: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/tasks/{uuid}"))

    def wait(
        self, uuid: str, states: set[str] | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        states = states or TERMINAL
        return wait_for(
            lambda: self.task(uuid),
            lambda t: t["state"] in states,
            timeout,
            f"task {uuid} to reach {states}",
        )

    def wait_output(self, uuid: str, pattern: str, timeout: float = 60) -> None:
        """Wait until a line of a task's stdout matches ``pattern`` (the SDK's
        :meth:`~hpcsnap.Task.wait_output`). ``FullyExecuting`` only says that the command was
        started: a command that prints a line once it has written its first files lets a
        snapshot taken after that line see them."""
        with Connection(client_token=self.token, cluster_url=self.base) as conn:
            match = conn.retrieve_task(uuid).wait_output(pattern, timeout)
        assert match, f"task {uuid} printed no line matching {pattern!r} in {timeout} s"

    def wait_snapshot(self, uuid: str, snap_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll a snapshot until it is ``Success`` or ``Failure``."""
        return dict(
            wait_for(
                lambda: self.ok("GET", f"/tasks/{uuid}/snapshot/{snap_id}"),
                lambda s: s["status"] in ("Success", "Failure"),
                timeout,
                f"snapshot {snap_id}",
            )
        )

    def upload(self, bucket: str, key: str, data: bytes) -> None:
        self.ok("PUT", f"/buckets/{bucket}/files/{key}", content=data)

    def download(self, bucket: str, key: str) -> bytes:
        resp = self.http.get(f"/buckets/{bucket}/files/{key}")
        assert resp.status_code == 200, resp.text
        return resp.content

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return [
            o["key"] for o in self.ok("GET", f"/buckets/{bucket}/files", params={"prefix": prefix})
        ]


def wait_for(
    fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if done(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def agent_pids(task_uuid: str) -> list[int]:
    """The pids of the agent process(es) of a task (found by their command line)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if task_uuid.encode() in cmd and b"hpcsnap.agent" in cmd:
            pids.append(int(p.name))
    return pids


def agent_token(uuid: str) -> str:
    """The credential of a task's agent, from its environment (root reads it in /proc)."""
    for pid in agent_pids(uuid):
        for var in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if var.startswith(b"HPCSNAP_AGENT_TOKEN="):
                return var.split(b"=", 1)[1].decode()
    raise AssertionError(f"no agent of task {uuid}")


class ServerProcess:
    """``hpcsnap serve`` in a subprocess with its own data dir and port."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.env = {"HPCSNAP_AGENT_TIMEOUT": "30", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"
        self.admin_token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "hpcsnap"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        wait_for(self._healthy, bool, 30, f"server on {self.url} (log: {self.log})")
        token_file = self.data_dir / "admin-token"
        if token_file.exists():
            self.admin_token = token_file.read_text().strip()

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> ServerProcess:
        """Started; stopped with its agents (:meth:`cleanup`) on leaving the block."""
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        """Stop the server and every agent (and task) it started."""
        self.stop()
        marker = str(self.data_dir / "work")
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "hpcsnap.agent" in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def user(self, name: str) -> Api:
        """A new user, created in the server's own database (PostgreSQL included)."""
        args = ("user", "create", name, "--data-dir", str(self.data_dir))
        return Api(self.url, hpcsnap(*args, env=self.env).stdout.strip())

    def anonymous(self) -> Api:
        return Api(self.url, None)
