"""``hpcsnap submit --resume-from TASK[:ID|latest]`` and what ``show`` says of it."""

from __future__ import annotations

import json

from tests.cli.helpers import Cli


def test_submit_resume_from_latest_or_a_snapshot(cli: Cli) -> None:
    source = cli.out(
        "submit", "--wait", "--name", "source",
        "echo one > a.txt; hpcsnap job snapshot --label one > /dev/null; "
        "echo two > a.txt; hpcsnap job snapshot --label two > /dev/null",
    )  # fmt: skip
    snaps = json.loads(cli.out("snapshots", source, "--json"))
    one, two = (s["id"] for s in snaps)

    done = cli("submit", "--wait", "--resume-from", source[:8], "cat a.txt")
    resumed = done.stdout.strip()
    assert f"/job is restored from snapshot {two} of task {source}" in done.stderr
    assert cli.out("logs", resumed) == "two"
    assert "resumed from:" in cli.out("show", resumed) and two in cli.out("show", resumed)

    older = cli.out("submit", "--wait", "--resume-from", f"{source}:{one[:6]}", "cat a.txt")
    assert cli.out("logs", older) == "one"
    assert json.loads(cli.out("show", older, "--json"))["resumeFrom"] == {
        "taskUuid": source,
        "snapshotId": one,
    }


def test_resume_from_a_task_without_snapshots_fails(cli: Cli) -> None:
    bare = cli.out("submit", "--wait", "true")
    proc = cli("submit", "--resume-from", f"{bare}:latest", "true", rc=1)
    assert f"task {bare} has no successful snapshot to resume from" in proc.stderr
    assert proc.stdout == ""
