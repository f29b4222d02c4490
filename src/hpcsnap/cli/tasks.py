"""``hpcsnap submit|tasks|show|logs|abort|download``."""

from __future__ import annotations

import re
import secrets
import shlex
from pathlib import Path

import click

from hpcsnap.cli import events, output
from hpcsnap.cli.buckets import upload
from hpcsnap.cli.common import connection, failed, find_snapshot, find_task
from hpcsnap.sdk import Bucket, Connection, Task, TaskState

TERMINAL = (TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED)


def _slug(text: str) -> str:
    """``text`` as the start of a bucket name (lowercase letters, digits and '-')."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-") or "task"


def _resource(conn: Connection, value: str, task_name: str) -> Bucket:
    """A local file or directory is uploaded to a new bucket; anything else names a bucket."""
    path = Path(value)
    if not path.exists():
        return conn.retrieve_bucket(value)
    name = f"{_slug(task_name)}-inputs-{secrets.token_hex(3)}"
    target = conn.create_bucket(name)
    count = upload(target, [path])
    output.note(f"uploaded {count} file(s) from {value} to bucket {name}")
    return target


def _default_name(line: str) -> str:
    """The command's first word without its directory (``python3`` for ``python3 x.py``)."""
    words = line.split()
    return Path(words[0]).name if words else "task"


def _env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise failed(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def wait_for_end(task: Task, *, quiet: bool = False) -> None:
    with output.progress(f"task {output.short(task.uuid)}", transfer=False) as hook:
        task.wait(progress=hook)
    if not quiet:
        output.note(f"task {task.uuid}: {task.state}")


@click.command()
@click.argument("command", nargs=-1, required=True)
@click.option("-n", "--name", default=None, help="Task name [the command's first word].")
@click.option(
    "--profile",
    default="docker-batch",
    show_default=True,
    help="shell or docker-batch (both run COMMAND with /bin/sh -c).",
)
@click.option(
    "-r",
    "--resources",
    multiple=True,
    metavar="DIR|FILE|BUCKET",
    help="Placed in /job before COMMAND runs: a local directory or file (uploaded to a new "
    "bucket) or a bucket name. Repeatable; later ones win.",
)
@click.option(
    "--from-snapshot",
    "from_snapshot",
    metavar="TASK[:ID]",
    default=None,
    help="Restore /job from a snapshot of TASK (default: its latest successful one) on top of "
    "the resources: the way to continue a failed run.",
)
@click.option(
    "--resume-from",
    "resume_from",
    metavar="TASK[:ID|latest]",
    default=None,
    help="Start with /job restored by the server from a snapshot of TASK (default: its latest "
    "successful one), before the resources; restored files count as inputs.",
)
@click.option("--results", metavar="BUCKET", default=None, help="Result bucket [task-<uuid>].")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Environment variable.")
@click.option("--snapshot-interval", type=int, default=None, help="Periodic snapshots (s).")
@click.option(
    "--retention",
    type=click.IntRange(min=1),
    default=None,
    help="Keep only the last N periodic snapshots.",
)
@click.option("--snapshot-whitelist", metavar="REGEX", default=None, help="Snapshot only these.")
@click.option("--snapshot-blacklist", metavar="REGEX", default=None, help="Leave these out.")
@click.option("--results-whitelist", metavar="REGEX", default=None, help="Upload only these.")
@click.option("--results-blacklist", metavar="REGEX", default=None, help="Do not upload these.")
@click.option(
    "--upload-results-on-cancel", is_flag=True, help="Upload results of an aborted task too."
)
@click.option("--wall-time", default=None, help="Time limit: seconds or HH:MM:SS.")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the end; exit 1 unless it succeeds.")
@click.option(
    "--download",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Wait, then download the results into this directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON, not its uuid.")
def submit(
    command: tuple[str, ...],
    name: str | None,
    profile: str,
    resources: tuple[str, ...],
    from_snapshot: str | None,
    resume_from: str | None,
    results: str | None,
    env: tuple[str, ...],
    snapshot_interval: int | None,
    retention: int | None,
    snapshot_whitelist: str | None,
    snapshot_blacklist: str | None,
    results_whitelist: str | None,
    results_blacklist: str | None,
    upload_results_on_cancel: bool,
    wall_time: str | None,
    tags: tuple[str, ...],
    wait: bool,
    download: Path | None,
    as_json: bool,
) -> None:
    """Submit COMMAND as a task and print its uuid.

    One argument is a shell command line ('wc -l input.txt > count.txt'); several are joined
    as a command and its arguments (hpcsnap submit -- python3 heat.py --np 2).
    """
    conn = connection()
    line = command[0] if len(command) == 1 else shlex.join(command)
    task_name = name or _default_name(line)
    task = conn.create_task(task_name, profile)
    task.constants = {**_env(env), "DOCKER_CMD": line}
    task.resources = [_resource(conn, value, task_name) for value in resources]
    if from_snapshot:
        task_ref, _, snap_ref = from_snapshot.partition(":")
        snap = find_snapshot(find_task(conn, task_ref), snap_ref or "latest")
        task.resources.append(snap.as_resource())
        output.note(f"restoring /job from snapshot {snap.id} ({snap.directory})")
    if resume_from:
        task_ref, _, snap_ref = resume_from.partition(":")
        source = find_task(conn, task_ref)
        if snap_ref in ("", "latest"):
            task.resume_from(source, "latest")
        else:
            task.resume_from(find_snapshot(source, snap_ref))
    if results:
        task.results = conn.create_bucket(results)
    if snapshot_interval:
        task.snapshot(snapshot_interval)
    task.snapshot_retention = retention
    task.snapshot_whitelist = snapshot_whitelist
    task.snapshot_blacklist = snapshot_blacklist
    task.results_whitelist = results_whitelist
    task.results_blacklist = results_blacklist
    task.upload_results_on_cancellation = upload_results_on_cancel or None
    task.wall_time_limit = wall_time
    task.tags = tags
    task.submit()
    if task.resumed_from:
        output.note(f"/job is restored from {_resumed(task)} before the command starts")
    if not as_json:
        click.echo(task.uuid)
    if wait or download:
        wait_for_end(task)
        if download:
            _download_results(task, download, snapshots=False)
    if as_json:
        output.print_json(task.raw)
    if (wait or download) and task.state != TaskState.SUCCESS:
        raise SystemExit(1)


def _resumed(task: Task) -> str:
    ref = task.resumed_from
    return f"snapshot {ref['snapshotId']} of task {ref['taskUuid']}" if ref else "-"


def _task_row(t: Task) -> tuple[str, ...]:
    raw = t.raw
    interval = raw.get("snapshotInterval") or 0
    return (
        output.short(t.uuid),
        t.name,
        str(raw.get("state")),
        output.when(t.creation_date),
        f"{interval} s" if interval else "-",
        "-" if raw.get("exitCode") is None else str(raw["exitCode"]),
    )


@click.command("tasks")
@click.option("--state", default=None, help="Only tasks in this state (e.g. FullyExecuting).")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def list_tasks(state: str | None, as_json: bool) -> None:
    """List your tasks, newest first."""
    found = connection().tasks(state=state)
    if as_json:
        output.print_json([t.raw for t in found])
        return
    output.table(
        ["ID", "NAME", "STATE", "CREATED (UTC)", "PERIODIC", "EXIT"],
        [_task_row(t) for t in found],
    )


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts (task and snapshots).")
def show(task_ref: str, as_json: bool) -> None:
    """Show a task (uuid or unique prefix): state, settings, errors, snapshots."""
    task = find_task(connection(), task_ref)
    snaps = task.snapshots()
    raw = task.raw
    if as_json:
        output.print_json({**raw, "snapshots": [s.raw for s in snaps]})
        return
    resources = [b.name + (f" ({b.prefix})" if b.prefix else "") for b in task.resources]
    pairs = [
        ("uuid", str(task.uuid)),
        ("name", task.name),
        ("state", str(raw.get("state"))),
        ("command", task.command or ""),
        ("created", output.when(task.creation_date)),
        ("ended", output.when(task.end_date)),
        ("exit code", "-" if raw.get("exitCode") is None else str(raw["exitCode"])),
        ("resources", ", ".join(resources) or "-"),
        ("resumed from", _resumed(task)),
        ("results", task.results.name if task.results else "-"),
        ("periodic", f"every {raw['snapshotInterval']} s" if raw.get("snapshotInterval") else "-"),
        ("snapshot whitelist", raw.get("snapshotWhitelist") or "-"),
        ("snapshot blacklist", raw.get("snapshotBlacklist") or "-"),
        ("results whitelist", raw.get("resultsWhitelist") or "-"),
        ("results blacklist", raw.get("resultsBlacklist") or "-"),
        ("job mode", str(raw.get("jobMode") or "-")),
    ]
    pairs += [("error", e) for e in task.errors]
    output.fields(pairs)
    if snaps:
        click.echo()
        from hpcsnap.cli.snapshots import snapshot_rows

        output.table(*snapshot_rows(snaps))


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing until the task ends, events inline."
)
@click.option("--stderr", "err", is_flag=True, help="Standard error instead of output.")
@click.option("--events-only", is_flag=True, help="Only the state and snapshot events.")
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines (output included).")
def logs(task_ref: str, follow: bool, err: bool, events_only: bool, as_json: bool) -> None:
    """Print a task's standard output (or error).

    With -f, -- lines show its state changes and snapshots as they happen, until it ends.
    """
    task = find_task(connection(), task_ref)
    if not (follow or events_only or as_json):
        click.echo(task.stderr() if err else task.stdout(), nl=False)
        return
    stream = "stderr" if err else "stdout"
    events.follow(task, stream=stream, follow=follow, events_only=events_only, as_json=as_json)


@click.command("wait")
@click.argument("task_ref", metavar="TASK")
@click.option("--running", is_flag=True, help="Only until its command runs (snapshots work).")
@click.option(
    "--output",
    "pattern",
    metavar="REGEX",
    default=None,
    help="Only until a line of its output matches REGEX (exit 1 if it ends first).",
)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def wait_cmd(task_ref: str, running: bool, pattern: str | None, timeout: float | None) -> None:
    """Wait for a task to end; exit 1 unless it succeeded (or, with --running, unless it runs;
    with --output, unless it prints a line that matches)."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise click.BadParameter(f"{pattern!r} is not a regular expression: {exc}") from exc
        if running:
            raise click.UsageError("--running and --output are exclusive: choose one")
    task = find_task(connection(), task_ref)
    with output.progress(f"task {output.short(task.uuid)}", transfer=False) as hook:
        if pattern is not None:
            hook(0, None, "waiting for its output")
            match = task.wait_output(pattern, timeout)
            if match is None:
                raise failed(
                    f"task {task.uuid} printed no line matching {pattern!r} in {timeout} s"
                )
            printed = match.string
        elif running:
            hook(0, None, "waiting for it to run")
            if not task.wait_running(timeout):
                raise failed(f"task {task.uuid} is still {task.state} after {timeout} s")
        elif not task.wait(timeout, progress=hook):
            raise failed(f"task {task.uuid} is still {task.state} after {timeout} s")
    if pattern is not None:
        output.note(f"task {task.uuid} printed: {printed}")
        return
    output.note(f"task {task.uuid}: {task.state}")
    if not running and task.state != TaskState.SUCCESS:
        raise SystemExit(1)


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.option("--wait", is_flag=True, help="Wait until it is Cancelled.")
def abort(task_ref: str, wait: bool) -> None:
    """Abort a running or queued task."""
    task = find_task(connection(), task_ref)
    task.abort()
    if wait:
        wait_for_end(task)
    else:
        output.note(f"task {task.uuid}: {task.state}")


def _download_results(task: Task, dest: Path, *, snapshots: bool) -> None:
    with output.progress("results") as hook:
        written = task.download_results(dest, snapshots=snapshots, progress=hook)
    output.note(f"downloaded {len(written)} file(s) of task {task.uuid} to {dest}")


@click.command()
@click.argument("task_ref", metavar="TASK")
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-s",
    "--snapshot",
    "snapshot_ref",
    metavar="ID|latest",
    default=None,
    help="A snapshot (id, unique prefix, or 'latest' successful) instead of the results.",
)
@click.option(
    "--with-snapshots", is_flag=True, help="Results: include the snapshot directories too."
)
def download(task_ref: str, dest: Path, snapshot_ref: str | None, with_snapshots: bool) -> None:
    """Download a task's results (or one of its snapshots) into DEST."""
    task = find_task(connection(), task_ref)
    if snapshot_ref is None:
        _download_results(task, dest, snapshots=with_snapshots)
        return
    snap = find_snapshot(task, snapshot_ref)
    with output.progress(f"snapshot {output.short(snap.id)}") as hook:
        written = snap.download(dest, progress=hook)
    output.note(
        f"downloaded {len(written)} file(s) of snapshot {snap.id} ({snap.directory}) to {dest}"
    )


def register(group: click.Group) -> None:
    for command in (submit, list_tasks, show, logs, wait_cmd, abort, download):
        group.add_command(command)
