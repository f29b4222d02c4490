"""Shipping the command's stdout and stderr to the server while it runs."""

from __future__ import annotations

import codecs
import logging
import os
import threading
from typing import IO

from hpcsnap.agent.client import AgentClient, CredentialRevoked, ServerRefused
from hpcsnap.agent.protocol import LogReport

log = logging.getLogger(__name__)

#: Output kept while the server is unreachable; beyond it the oldest text is dropped (and said).
MAX_BUFFER = 8 << 20


class LogShipper:
    """Reads both pipes (one thread each) and sends what arrived every ``period`` seconds."""

    def __init__(
        self, client: AgentClient, stdout: IO[bytes], stderr: IO[bytes], *, period: float = 0.5
    ) -> None:
        self.client = client
        self.period = period
        self._buf = {"stdout": [], "stderr": []}  # type: dict[str, list[str]]
        self._size = 0
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(name, pipe), daemon=True)
            for name, pipe in (("stdout", stdout), ("stderr", stderr))
        ]
        self._done = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, daemon=True)

    def start(self) -> LogShipper:
        for t in self._readers:
            t.start()
        self._sender.start()
        return self

    def _read(self, name: str, pipe: IO[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = pipe.fileno()

        while True:
            data = os.read(fd, 65536)
            text = decoder.decode(data, final=not data)
            if text:
                self._append(name, text)
            if not data:
                break
        pipe.close()

    def _append(self, name: str, text: str) -> None:
        with self._lock:
            self._buf[name].append(text)
            self._size += len(text)
            while self._size > MAX_BUFFER and any(self._buf.values()):
                victim = max(self._buf, key=lambda k: len(self._buf[k]))
                dropped = self._buf[victim].pop(0)
                self._size -= len(dropped)
                note = f"\n[hpcsnap: {len(dropped)} characters dropped: server unreachable]\n"
                self._buf[victim].insert(0, note)
                self._size += len(note)

    def _take(self) -> LogReport | None:
        with self._lock:
            if not self._size:
                return None
            report = LogReport(
                stdout="".join(self._buf["stdout"]), stderr="".join(self._buf["stderr"])
            )
            self._buf = {"stdout": [], "stderr": []}
            self._size = 0
            return report

    def _put_back(self, report: LogReport) -> None:
        with self._lock:
            self._buf["stdout"].insert(0, report.stdout)
            self._buf["stderr"].insert(0, report.stderr)
            self._size += len(report.stdout) + len(report.stderr)

    def flush(self, *, patience: float | None = 10.0) -> None:
        report = self._take()
        if report is None:
            return
        try:
            self.client.call("POST", "/logs", report, patience=patience)
        except CredentialRevoked:
            raise
        except ServerRefused as exc:
            log.error("server refused our logs: %s", exc)
        except Exception:
            self._put_back(report)

    def _send_loop(self) -> None:
        while not self._done.wait(self.period):
            try:
                self.flush()
            except CredentialRevoked:
                return

    def finish(self, *, timeout: float = 30.0) -> None:
        """Wait for both pipes to close (the command and its children ended), then send all."""
        for t in self._readers:
            t.join(timeout)
        self._done.set()
        self._sender.join(timeout)
        self.flush(patience=None)
