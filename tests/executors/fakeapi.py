"""A fake of the server's agent API, enough for a real agent to run a task end to end.

It answers ``/spec`` with the task it was given, accepts every report, and records every
request (method, path, Authorization header, JSON body) for the test to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hpcsnap.agent.protocol import AgentSpec, PeriodicConfig, dump


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any
    at: float


@dataclass
class FakeAgentApi:
    spec: AgentSpec
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    abort: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, method: str, suffix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def states(self) -> list[str]:
        return [r.body["state"] for r in self.seen("POST", "/state")]

    def stdout(self) -> str:
        """The command's output, as the agent sent it so far."""
        return "".join(r.body["stdout"] for r in self.seen("POST", "/logs"))

    def answer(self, method: str, path: str, body: Any) -> Any:
        rest = path.split(f"/v1/agent/tasks/{self.spec.uuid}", 1)[-1].split("?", 1)[0]
        if method == "GET" and rest == "/spec":
            return dump(self.spec)
        if method == "GET" and rest == "/events":
            deadline = time.monotonic() + 0.5
            while not self.abort and time.monotonic() < deadline:
                time.sleep(0.05)
            return {"abort": self.abort, "periodic": dump(self.spec.periodic), "snapshots": []}
        if method == "POST" and rest == "/snapshots":
            return {"id": "snap-1", "kind": body["kind"], "directory": "snapshots/final/"}
        if method == "POST" and rest == "/state":
            return {"state": body["state"]}
        return {}


def task_spec(uuid: str, command: str, blobs: Path) -> AgentSpec:
    return AgentSpec(
        uuid=uuid,
        command=command,
        environment={},
        resources=[],
        storage={"kind": "local", "root": str(blobs)},
        namespace="user-1",
        periodic=PeriodicConfig(),
        task_user="hpcsnap-task",
    )


@contextmanager
def fake_agent_api(spec: AgentSpec) -> Iterator[FakeAgentApi]:
    api = FakeAgentApi(spec)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with api.lock:
                api.requests.append(
                    Request(method, self.path, self.headers.get("authorization"), body, time.time())
                )
            data = json.dumps(api.answer(method, self.path, body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.abort = True
        server.shutdown()
        server.server_close()
