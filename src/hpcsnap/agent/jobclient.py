#!/usr/bin/env python3
"""``hpcsnap job snapshot``, runnable inside a task with nothing but the system's python3.

In namespace mode the task user cannot run hpcsnap's own interpreter, so the agent installs
this file (standard library only) as ``/opt/hpcsnap/bin/hpcsnap`` and puts that directory on
the task's PATH. It asks the task's agent for a snapshot through ``$HPCSNAP_JOB_SOCKET``.
"""

import argparse
import json
import os
import socket
import sys
from typing import Any


def request_snapshot(
    label: str | None, wait: bool = True, path: str | None = None
) -> dict[str, Any]:
    """Ask this task's agent for a snapshot; returns its JSON answer as a dict."""
    where = path or os.environ.get("HPCSNAP_JOB_SOCKET")
    if not where:
        raise RuntimeError("HPCSNAP_JOB_SOCKET is not set: this is not running inside a task")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(where)
        s.sendall(json.dumps({"label": label, "wait": wait}).encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcsnap", description="hpcsnap, inside a task")
    sub = parser.add_subparsers(dest="group", required=True)
    job = sub.add_parser("job").add_subparsers(dest="command", required=True)
    snap = job.add_parser("snapshot", help="snapshot this task's /job now")
    snap.add_argument("--label", default=None)
    snap.add_argument("--no-wait", action="store_true")
    args = parser.parse_args(argv)
    try:
        reply = request_snapshot(args.label, wait=not args.no_wait)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"hpcsnap: could not reach this task's agent: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply))
    return 1 if reply.get("status") == "Failure" else 0


if __name__ == "__main__":
    sys.exit(main())
