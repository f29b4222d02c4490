"""Tasks through the SDK against a real server: submit, wait, output, results, abort, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import hpcsnap
from tests.support import ServerProcess, wait_for

Start = Callable[..., hpcsnap.Task]


def test_submit_wait_output_and_results(conn: hpcsnap.Connection, tmp_path: Path) -> None:
    inputs = conn.create_bucket("task-inputs")
    inputs.add_string("a\nb\nc\n", "input.txt")
    task = conn.create_task("count", "docker-batch")
    task.constants["DOCKER_CMD"] = "wc -l < input.txt > count.txt; echo $GREETING; echo done"
    task.constants["GREETING"] = "héllo"
    task.resources = [inputs]
    task.results = conn.create_bucket("task-outputs")
    assert task.state == "UnSubmitted" and task.uuid is None
    task.submit()
    assert task.uuid and task.state in ("Submitted", "FullyDispatched", "FullyExecuting")
    progress: list[str] = []
    assert task.wait(60, progress=lambda c, t, what: progress.append(what)) is True
    assert task.state == hpcsnap.TaskState.SUCCESS and task.exit_code == 0
    assert progress[-1] == "Success"
    assert task.stdout() == "héllo\ndone\n"
    assert task.fresh_stdout() == "héllo\ndone\n"
    # the server commits the cursor just after answering (see the report): allow a retry
    wait_for(task.fresh_stdout, lambda text: text == "", 5, "the fresh_stdout cursor")
    written = task.download_results(tmp_path / "res")
    assert written == [tmp_path / "res" / "count.txt"]  # outputs only, not the input
    assert (tmp_path / "res" / "count.txt").read_text().strip() == "3"
    again = conn.retrieve_task(task.uuid)
    assert again.constants == {"DOCKER_CMD": task.command, "GREETING": "héllo"}
    assert [b.name for b in again.resources] == ["task-inputs"]
    assert again.results is not None and again.results.name == "task-outputs"
    assert task.uuid in [t.uuid for t in conn.tasks(state="Success")]


def test_failure_exit_code_and_errors(conn: hpcsnap.Connection) -> None:
    task = conn.create_task("fails", "shell")
    task.constants["DOCKER_CMD"] = "echo oops >&2; exit 3"
    task.submit()
    assert task.wait(60)
    assert task.state == "Failure" and task.exit_code == 3
    assert any("3" in e for e in task.errors), task.errors
    assert task.stderr() == "oops\n"


def test_options_are_fixed_at_submission(start_task: Start) -> None:
    task = start_task("sleep 30")
    for attribute, value in [
        ("constants", {"A": "b"}),
        ("resources", []),
        ("results", "elsewhere"),
        ("results_whitelist", "x"),
        ("results_blacklist", "x"),
        ("upload_results_on_cancellation", True),
        ("name", "renamed"),
    ]:
        with pytest.raises(hpcsnap.TaskSubmittedError, match=f"cannot set {attribute}"):
            setattr(task, attribute, value)
    with pytest.raises(AttributeError):  # qarnot code catching AttributeError keeps working
        task.results_blacklist = "y"
    with pytest.raises(hpcsnap.TaskSubmittedError, match="constants"):
        task.constants["NEW"] = "x"
    task.resources.append(hpcsnap.Bucket(task._connection, "ignored"))
    assert [b.name for b in task.resources] == []
    with pytest.raises(hpcsnap.TaskSubmittedError, match="submit"):
        task.submit()


def test_abort_delete_and_missing(conn: hpcsnap.Connection, start_task: Start) -> None:
    task = start_task("sleep 30")
    task.abort()
    assert task.wait(30) and task.state == "Cancelled"
    with pytest.raises(hpcsnap.TaskNotRunningError, match="already completed"):
        task.abort()
    assert task.uuid is not None
    task.delete()
    assert task.state == "Deleted"
    uuid = task.uuid

    def gone() -> bool:  # the server commits just after answering: allow a retry
        try:
            conn.retrieve_task(uuid)
        except hpcsnap.MissingTaskError as exc:
            assert uuid in str(exc)
            return True
        return False

    wait_for(gone, bool, 5, "the deleted task to be gone")
    with pytest.raises(hpcsnap.TaskNotSubmittedError, match="submit"):
        conn.create_task("x").instant()


def test_run_aborts_at_job_timeout(conn: hpcsnap.Connection, tmp_path: Path) -> None:
    task = conn.create_task("too-long")
    task.constants["DOCKER_CMD"] = "echo partial > partial.txt; sleep 30"
    task.upload_results_on_cancellation = True
    # from the submission: the command has started and written its file by then, even on a
    # loaded machine (submitted -> FullyExecuting takes about a second)
    task.run(tmp_path / "out", job_timeout=10)
    assert task.state == "Cancelled"
    assert (tmp_path / "out" / "partial.txt").read_text() == "partial\n"


def test_follow_yields_output_until_the_end(conn: hpcsnap.Connection) -> None:
    task = conn.create_task("talks")
    task.constants["DOCKER_CMD"] = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    task.submit()
    text = "".join(task.follow())
    assert text == "line 1\nline 2\nline 3\n"
    assert task.state == "Success"


def test_wait_output_returns_the_first_matching_line(conn: hpcsnap.Connection) -> None:
    task = conn.create_task("milestones")
    # "Time = 1" arrives in two pieces: a line is matched once it is whole, not before
    task.constants["DOCKER_CMD"] = (
        "echo Time = 0.5; printf 'Time = 1'; sleep 0.5; printf '0\\nTime = 1\\n'; sleep 30"
    )
    task.submit()
    try:
        match = task.wait_output(r"^Time = (1\d*)$", 60)
        assert match is not None and match.group(1) == "10"
        assert match.string == "Time = 10"
        assert task.wait_output("never printed", 1) is None  # a time-out, while it still runs
    finally:
        task.abort()
    task.wait(60)
    with pytest.raises(hpcsnap.TaskNotRunningError, match="without printing a line matching"):
        task.wait_output("never printed", 60)  # ended: no waiting for what cannot come
    assert task.wait_output(r"^Time = 1$").string == "Time = 1"  # type: ignore[union-attr]


def test_errors_carry_the_servers_message(conn: hpcsnap.Connection, server: ServerProcess) -> None:
    task = conn.create_task("bad-regex")
    task.constants["DOCKER_CMD"] = "true"
    task.snapshot_blacklist = "(unclosed"
    with pytest.raises(hpcsnap.BadRequestError, match="snapshotBlacklist"):
        task.submit()
    task = conn.create_task("no-bucket")
    task.constants["DOCKER_CMD"] = "true"
    task.resources = ["no-such-bucket"]
    with pytest.raises(hpcsnap.MissingBucketError, match="no-such-bucket"):
        task.submit()
    with pytest.raises(hpcsnap.MissingTaskError):
        conn.retrieve_task("00000000-0000-0000-0000-000000000000")
    bad = hpcsnap.Connection(client_token="hps_wrong", cluster_url=server.url)
    with bad, pytest.raises(hpcsnap.UnauthorizedError, match="token"):
        bad.tasks()
