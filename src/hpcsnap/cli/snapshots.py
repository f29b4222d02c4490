"""``hpcsnap snapshot|snapshots|periodic``."""

from __future__ import annotations

from collections.abc import Sequence

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection, find_task
from hpcsnap.sdk import Snapshot


def snapshot_rows(snaps: Sequence[Snapshot]) -> tuple[list[str], list[tuple[str, ...]]]:
    columns = ["ID", "KIND", "LABEL", "STATUS", "TRIGGERED (UTC)", "FILES", "SIZE", "DIRECTORY"]
    rows: list[tuple[str, ...]] = [
        (
            output.short(s.id),
            s.kind,
            s.label or "-",
            s.status.value,
            output.when(s.trigger_date),
            str(s.files_total) if s.succeeded else "-",
            output.size(s.size_to_upload) if s.succeeded else "-",
            s.directory if s.succeeded else (s.error or "")[:60],
        )
        for s in snaps
    ]
    return columns, rows


def summary(snap: Snapshot) -> str:
    if snap.failed:
        return f"snapshot {snap.id} failed: {snap.error or 'no reason given'}"
    reused = f", {snap.files_reused} unchanged" if snap.files_reused else ""
    warn = "".join(f"\n  warning: {w}" for w in snap.warnings)
    return (
        f"snapshot {snap.id} {snap.status.value}: {snap.files_total} file(s), "
        f"{output.size(snap.size_to_upload)}{reused} in {snap.bucket_name}/{snap.directory}{warn}"
    )


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.option("-l", "--label", default=None, help="Label, part of its directory name.")
@click.option("--whitelist", metavar="REGEX", default=None, help="For this snapshot only.")
@click.option("--blacklist", metavar="REGEX", default=None, help="For this snapshot only.")
@click.option("--wait", is_flag=True, help="Wait for it (progress bar); exit 1 if it fails.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def snapshot(
    task_ref: str,
    label: str | None,
    whitelist: str | None,
    blacklist: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Snapshot a running task's /job now and print the snapshot's id."""
    task = find_task(connection(), task_ref)
    snap_id = task.instant(whitelist, blacklist, label=label)
    if not as_json:
        click.echo(snap_id)
    if not wait:
        if as_json:
            output.print_json(task.snapshot_status(snap_id).raw)
        return
    with output.progress(f"snapshot {output.short(snap_id)}") as hook:
        snap = task.wait_snapshot(snap_id, timeout, progress=hook)
    if as_json:
        output.print_json(snap.raw)
    output.note(summary(snap))
    if not snap.succeeded:
        raise SystemExit(1)


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def snapshots(task_ref: str, as_json: bool) -> None:
    """List a task's snapshots, oldest first."""
    found = find_task(connection(), task_ref).snapshots()
    if as_json:
        output.print_json([s.raw for s in found])
        return
    output.table(*snapshot_rows(found))


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.argument("interval", type=click.IntRange(min=0))
@click.option("--whitelist", metavar="REGEX", default=None, help="New snapshot whitelist.")
@click.option("--blacklist", metavar="REGEX", default=None, help="New snapshot blacklist.")
@click.option(
    "--retention",
    type=click.IntRange(min=1),
    default=None,
    help="Keep only the last N periodic snapshots.",
)
def periodic(
    task_ref: str,
    interval: int,
    whitelist: str | None,
    blacklist: str | None,
    retention: int | None,
) -> None:
    """Snapshot a task every INTERVAL seconds from now on (0 stops it).

    Filters given here become the task's snapshot filters ('' clears one).
    """
    task = find_task(connection(), task_ref)
    task.snapshot_periodic(interval, whitelist, blacklist, retention=retention)
    every = f"every {task.snapshot_interval} s" if task.snapshot_interval else "off"
    if task.snapshot_retention:
        every += f", keeping the last {task.snapshot_retention}"
    filters = "".join(
        f", {kind} {value}"
        for kind, value in (
            ("whitelist", task.snapshot_whitelist),
            ("blacklist", task.snapshot_blacklist),
        )
        if value
    )
    output.note(f"task {task.uuid}: periodic snapshots {every}{filters}")


def register(group: click.Group) -> None:
    for command in (snapshot, snapshots, periodic):
        group.add_command(command)
