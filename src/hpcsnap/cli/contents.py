"""``hpcsnap diff|archive``: what changed between snapshots (or the results), and a snapshot or
the results as one archive."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection, find_snapshot, find_task
from hpcsnap.sdk import FileChange, MissingSnapshotError, SnapshotDiff, Task

RESULTS = "results"
SIDE = "ID|latest|LABEL|results"


def find_side(task: Task, ref: str) -> str:
    """``results``, or the id of the snapshot that ``ref`` names: an id or unique id prefix,
    ``latest``, or a label (the latest successful snapshot that has it)."""
    if ref == RESULTS:
        return RESULTS
    try:
        return find_snapshot(task, ref).id
    except MissingSnapshotError:
        labelled = task.latest_snapshot(label=ref)
        if labelled is None:
            raise MissingSnapshotError(
                f"task {task.uuid} has no snapshot {ref!r} (an id, a unique id prefix, 'latest', "
                "a label or 'results')",
                status_code=404,
            ) from None
        return labelled.id


def _sizes(c: FileChange) -> tuple[str, str]:
    def one(n: int | None) -> str:
        return "-" if n is None else output.size(n)

    return one(c.old_size), one(c.new_size)


def _totals(d: SnapshotDiff) -> str:
    parts = [
        f"{len(d.added)} added (+{output.size(d.bytes_added)})",
        f"{len(d.removed)} removed (-{output.size(d.bytes_removed)})",
        f"{len(d.modified)} modified ({output.size(d.bytes_modified_old)} -> "
        f"{output.size(d.bytes_modified_new)})",
    ]
    if d.mode_changed:
        parts.append(f"{len(d.mode_changed)} with new permissions only")
    parts.append(f"{d.unchanged} unchanged")
    return ", ".join(parts)


def _side_name(ref: str | None) -> str:
    return "nothing" if ref is None else RESULTS if ref == RESULTS else output.short(ref)


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.argument("old", metavar="A")
@click.argument("new", metavar="B")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Paths per list at most.")
@click.option("--json", "as_json", is_flag=True, help="The server's JSON, for scripts.")
def diff(task_ref: str, old: str, new: str, limit: int | None, as_json: bool) -> None:
    """What changed from A to B: each a snapshot of TASK (id, unique id prefix, 'latest', a
    label) or 'results' (its final results).

    Lists paths added, removed and modified (content, kind or symlink target), then files
    whose permissions alone changed, then totals. Exit code 0 whether or not they differ.
    """
    task = find_task(connection(), task_ref)
    d = task.diff(find_side(task, old), find_side(task, new), limit=limit)
    if as_json:
        output.print_json(d.raw)
        return
    rows = [("added", c.path, *_sizes(c)) for c in d.added]
    rows += [("removed", c.path, *_sizes(c)) for c in d.removed]
    rows += [("modified", c.path, *_sizes(c)) for c in d.modified]
    rows += [("mode", m.path, f"{m.old_mode:04o}", f"{m.new_mode:04o}") for m in d.mode_changed]
    rows.sort(key=lambda r: r[1])
    if rows:
        output.table(["CHANGE", "PATH", "OLD", "NEW"], rows)
    if d.truncated:
        click.echo(f"(lists cut at {limit} paths each)")
    click.echo(f"{_side_name(d.old)} -> {_side_name(d.new)}: {_totals(d)}")


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.argument("dest", metavar="OUT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-s",
    "--snapshot",
    "snapshot_ref",
    metavar="ID|latest|LABEL",
    default=None,
    help="A snapshot instead of the final results.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tar.gz", "zip"]),
    default=None,
    help="Archive format [from OUT's name: .tar.gz, .tgz or .zip].",
)
def archive(task_ref: str, dest: Path, snapshot_ref: str | None, fmt: str | None) -> None:
    """Download a task's final results (or one of its snapshots) as one archive, OUT.

    The archive is made while it is sent; '-' writes it to standard output (tar.gz unless
    --format zip).
    """
    name = str(dest)
    if fmt is None and name != "-" and not name.lower().endswith((".zip", ".tar.gz", ".tgz")):
        raise click.BadParameter(
            "name it .tar.gz, .tgz or .zip, or give --format", param_hint="OUT"
        )
    task = find_task(connection(), task_ref)
    ref = RESULTS if snapshot_ref is None else find_side(task, snapshot_ref)
    target = sys.stdout.buffer if name == "-" else dest
    with output.progress(f"{output.short(task.uuid)} {ref} archive") as hook:
        if ref == RESULTS:
            what = f"results of task {task.uuid}"
            task.download_results_archive(target, format=fmt, progress=hook)
        else:
            snap = task.snapshot_status(ref)
            what = f"snapshot {snap.id} ({snap.directory})"
            snap.download_archive(target, format=fmt, progress=hook)
    if name != "-":
        output.note(f"wrote the {what} to {dest} ({output.size(dest.stat().st_size)})")


def register(group: click.Group) -> None:
    for command in (diff, archive):
        group.add_command(command)
