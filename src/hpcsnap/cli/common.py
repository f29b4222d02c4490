"""Shared pieces of the client commands: the connection, id prefixes, errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import click

from hpcsnap.sdk import (
    Connection,
    HpcsnapError,
    MissingSnapshotError,
    MissingTaskError,
    Snapshot,
    Task,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Options:
    """The global options (``--url``, ``--token``, ``--config``) and the connection they give."""

    url: str | None = None
    token: str | None = None
    config: Path | None = None
    _connection: Connection | None = field(default=None, repr=False)

    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(
                self.config, client_token=self.token, cluster_url=self.url
            )
        return self._connection


pass_options = click.make_pass_decorator(Options, ensure=True)


def connection(ctx: click.Context | None = None) -> Connection:
    """The connection of the current command (created on first use)."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(Options).connection()


class CommandError(click.ClickException):
    """An error shown as one line, ``hpcsnap: error: ...``, exit code 1."""

    def show(self, file: object = None) -> None:
        click.echo(f"hpcsnap: error: {self.format_message()}", err=True)


def failed(message: str) -> CommandError:
    return CommandError(message)


def _ambiguous(kind: str, prefix: str, matches: list[str]) -> HpcsnapError:
    shown = ", ".join(m[:12] for m in matches[:5])
    return HpcsnapError(f"{kind} id prefix {prefix!r} is ambiguous: {shown}; give more characters")


def find_task(conn: Connection, ref: str) -> Task:
    """A task by uuid or unique uuid prefix."""
    ref = ref.strip().lower()
    if UUID.match(ref):
        return conn.retrieve_task(ref)
    matches = [t for t in conn.tasks() if (t.uuid or "").startswith(ref)]
    if not ref or not matches:
        raise MissingTaskError(f"task {ref} not found", status_code=404)
    if len(matches) > 1:
        raise _ambiguous("task", ref, [t.uuid or "" for t in matches])
    return matches[0]


def find_snapshot(task: Task, ref: str) -> Snapshot:
    """A snapshot of ``task`` by id, unique id prefix, or ``latest`` (latest successful)."""
    if ref == "latest":
        latest = task.latest_snapshot()
        if latest is None:
            raise MissingSnapshotError(
                f"task {task.uuid} has no successful snapshot yet", status_code=404
            )
        return latest
    ref = ref.strip().lower()
    if UUID.match(ref):
        return task.snapshot_status(ref)
    matches = [s for s in task.snapshots() if s.id.startswith(ref)]
    if not ref or not matches:
        raise MissingSnapshotError(f"snapshot {ref} of task {task.uuid} not found", status_code=404)
    if len(matches) > 1:
        raise _ambiguous("snapshot", ref, [s.id for s in matches])
    return matches[0]
