"""``hpcsnap snapshot-delete|verify``: removing a snapshot, checking stored content."""

from __future__ import annotations

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection, find_snapshot, find_task
from hpcsnap.sdk import Verification


@click.command("snapshot-delete")
@click.argument("task_ref", metavar="TASK")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--json", "as_json", is_flag=True, help="Print the deleted snapshot as JSON.")
def snapshot_delete(task_ref: str, snapshot_ref: str, as_json: bool) -> None:
    """Delete one snapshot (id, unique id prefix or 'latest').

    Its files disappear from the bucket at once; content that nothing else holds (other
    snapshots, results, uploads) is freed from storage.
    """
    task = find_task(connection(), task_ref)
    snap = task.delete_snapshot(find_snapshot(task, snapshot_ref))
    if as_json:
        output.print_json(snap.raw)
        return
    freed = int(snap.raw.get("freedBytes") or 0)
    output.note(
        f"snapshot {snap.id} deleted ({snap.directory}); {output.size(freed)} of storage freed"
    )


def _show(what: str, report: Verification) -> None:
    state = "OK" if report.ok else "PROBLEMS"
    click.echo(f"{what}: {state}, {report.files} file(s), {output.size(report.bytes)} re-read")
    for path in report.missing:
        click.echo(f"  missing    {path}")
    for path in report.corrupted:
        click.echo(f"  corrupted  {path}")


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.argument("snapshot_ref", metavar="[SNAPSHOT]", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def verify(task_ref: str, snapshot_ref: str | None, as_json: bool) -> None:
    """Re-hash stored files against their manifest; exit code 1 if any is missing or corrupted.

    Without SNAPSHOT: every successful snapshot of TASK, then its results.
    """
    task = find_task(connection(), task_ref)
    reports: list[tuple[str, dict[str, object], Verification]] = []
    if snapshot_ref is not None:
        snaps = [find_snapshot(task, snapshot_ref)]
    else:
        snaps = [s for s in task.snapshots() if s.succeeded]
    for snap in snaps:
        report = task.verify_snapshot(snap)
        reports.append((f"snapshot {snap.id} ({snap.directory})", {"snapshot": snap.id}, report))
    if snapshot_ref is None and task.results is not None:
        report = task.verify_results()
        reports.append((f"results ({task.results.name})", {"results": task.results.name}, report))
    if as_json:
        output.print_json([{**ident, **r.raw} for _, ident, r in reports])
    else:
        for what, _, report in reports:
            _show(what, report)
    if not all(r.ok for _, _, r in reports):
        raise SystemExit(1)


def register(group: click.Group) -> None:
    for command in (snapshot_delete, verify):
        group.add_command(command)
