"""``hpcsnap logs -f``: a task's output with its state and snapshot events inline.

Event lines start with ``-- `` so that they stand out of the output; ``--json`` prints each
event as one JSON line instead.
"""

from __future__ import annotations

import json
from typing import Any

import click

from hpcsnap.cli import output
from hpcsnap.sdk import Task, TaskEvent


def snapshot_name(directory: Any) -> str:
    """``2026-11-25T14-05-09.123Z_label`` from ``<prefix>snapshots/2026-..._label/``."""
    return str(directory or "?").rstrip("/").rsplit("/", 1)[-1]


def _count(n: Any, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def describe(event: TaskEvent) -> str | None:
    """One human line for an event (None for output chunks, which are printed as they are)."""
    raw = event.raw
    kind = event.type
    if kind == "state":
        moved = f"{raw['from']} -> " if raw.get("from") else ""
        line = f"-- state: {moved}{raw.get('to')}"
        return line + (f": {raw['message']}" if raw.get("message") else "")
    if kind == "end":
        code = raw.get("exitCode")
        return f"-- task ended: {raw.get('state')}" + (
            "" if code is None else f" (exit code {code})"
        )
    if not kind.startswith("snapshot."):
        return None if kind == "log" else f"-- {kind}"
    head = f"-- snapshot {snapshot_name(raw.get('directory'))}"
    if kind == "snapshot.triggered":
        label = f" '{raw['label']}'" if raw.get("label") else ""
        return f"{head}: triggered ({raw.get('kind')}{label})"
    if kind == "snapshot.progress":
        return (
            f"{head}: {raw.get('filesDone', 0)}/{raw.get('filesTotal', 0)} files, "
            f"{output.size(raw.get('transferredSize'))} of {output.size(raw.get('sizeToUpload'))}"
        )
    if kind == "snapshot.success":
        seconds = (raw.get("durationMs") or 0) / 1000
        line = (
            f"{head}: Success, {_count(raw.get('filesTotal', 0), 'file')}, "
            f"{output.size(raw.get('bytesTotal'))} ({raw.get('filesRead', 0)} read, "
            f"{raw.get('filesReused', 0)} reused) in {seconds:.2f} s"
        )
        warnings = raw.get("warnings") or []
        return line + (f", {_count(len(warnings), 'warning')}" if warnings else "")
    if kind == "snapshot.failure":
        return f"{head}: Failure: {raw.get('error') or 'no reason given'}"
    if kind == "snapshot.deleted":
        return f"{head}: deleted ({raw.get('reason') or 'on request'})"
    return f"{head}: {kind}"


def follow(task: Task, *, stream: str, follow: bool, events_only: bool, as_json: bool) -> None:
    """Print the task's ``stream`` output on stdout with its events as ``-- `` lines on
    stderr (inline on a terminal; a redirect of stdout keeps the output alone). With
    ``events_only`` the event lines go to stdout; ``as_json`` prints JSON lines on stdout."""
    line_open = False  # the output printed last did not end its line
    for event in task.events(follow=follow):
        if event.is_log and (events_only or event.stream != stream):
            continue
        if as_json:
            click.echo(json.dumps(event.raw, ensure_ascii=False))
        elif event.is_log:
            click.echo(event.text, nl=False)
            line_open = not event.text.endswith("\n")
        elif (line := describe(event)) is None:
            continue
        elif events_only:
            click.echo(line)
        else:
            click.echo(("\n" if line_open else "") + line, err=True)
            line_open = False
