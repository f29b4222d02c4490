"""The scheduler's reading of executor states, and the reads the server repeats for every running
task (fake executor, real SQLite database)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy

from hpcsnap.blobstore import LocalBackend
from hpcsnap.executors import AgentLaunch, JobState
from hpcsnap.server.auth import create_user
from hpcsnap.server.config import Settings
from hpcsnap.server.context import ServerContext
from hpcsnap.server.db import Database, Snapshot, Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.scheduler import Scheduler


class FakeExecutor:
    name = "fake"

    def __init__(self) -> None:
        self.states: dict[str, JobState] = {}
        self.cancelled: list[str] = []

    def submit(self, launch: AgentLaunch) -> str:
        raise NotImplementedError

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        return {i: self.states[i] for i in ids if i in self.states}

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        self.cancelled += ids
        return dict.fromkeys(ids, True)

    def capacity(self) -> int | None:
        return None


@pytest.fixture()
def ctx(tmp_path: Path) -> ServerContext:
    settings = Settings(data_dir=tmp_path, agent_timeout=60)
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()
    with db.session() as s:
        create_user(s, "u")
    return ServerContext(settings, db, LocalBackend(tmp_path / "blobs"), FakeExecutor())


def add_task(ctx: ServerContext, state: str, seen_ago: float, *, abort: bool = False) -> str:
    task_uuid = str(uuid.uuid4())
    seen = utcnow() - dt.timedelta(seconds=seen_ago)
    with ctx.db.session() as s:
        s.add(
            Task(
                uuid=task_uuid,
                owner_id=1,
                name="t",
                command="true",
                result_bucket="r",
                state=state,
                executor="fake",
                executor_id=f"job-{task_uuid}",
                agent_seen=seen,
                state_transition_time=seen,
                abort_requested=abort,
            )
        )
    return task_uuid


def task(ctx: ServerContext, task_uuid: str) -> Task:
    with ctx.db.session() as s:
        t = s.get(Task, task_uuid)
        assert t is not None
        return t


def watch(ctx: ServerContext, states: dict[str, JobState]) -> FakeExecutor:
    ex = ctx.executor
    assert isinstance(ex, FakeExecutor)
    ex.states = {f"job-{k}": v for k, v in states.items()}
    Scheduler(ctx).watch()
    return ex


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (JobState.TIMEOUT, "time limit"),
        (JobState.OUT_OF_MEMORY, "out of memory"),
        (JobState.NODE_FAIL, "node running its job failed"),
        (JobState.PREEMPTED, "preempted"),
        (JobState.DONE, "exited without reporting"),
        (JobState.UNKNOWN, "no trace"),
    ],
)
def test_a_job_that_ended_silently_fails_its_task_with_the_reason(
    ctx: ServerContext, state: JobState, words: str
) -> None:
    t = add_task(ctx, "FullyExecuting", seen_ago=10)
    watch(ctx, {t: state})
    got = task(ctx, t)
    assert got.state == "Failure"
    assert words in got.errors[-1]["message"] and f"job-{t}" in got.errors[-1]["message"]


def test_a_job_that_just_ended_gets_time_to_report(ctx: ServerContext) -> None:
    t = add_task(ctx, "FullyExecuting", seen_ago=1)
    watch(ctx, {t: JobState.TIMEOUT})
    assert task(ctx, t).state == "FullyExecuting"


def test_a_queued_job_is_never_lost(ctx: ServerContext) -> None:
    t = add_task(ctx, "FullyDispatched", seen_ago=3600)
    watch(ctx, {t: JobState.PENDING})
    got = task(ctx, t)
    assert got.state == "FullyDispatched"
    assert got.agent_seen is not None and utcnow() - got.agent_seen < dt.timedelta(seconds=5)
    # when it starts, the agent has agent_timeout seconds to speak
    watch(ctx, {t: JobState.RUNNING})
    assert task(ctx, t).state == "FullyDispatched"


def test_a_silent_running_agent_is_lost(ctx: ServerContext) -> None:
    t = add_task(ctx, "FullyExecuting", seen_ago=120)
    ex = watch(ctx, {t: JobState.RUNNING})
    assert task(ctx, t).state == "Failure"
    assert ex.cancelled == [f"job-{t}"]


def test_aborting_a_queued_job_cancels_it_at_once(ctx: ServerContext) -> None:
    t = add_task(ctx, "PendingCancel", seen_ago=1, abort=True)
    ex = watch(ctx, {t: JobState.PENDING})
    assert task(ctx, t).state == "Cancelled"
    assert ex.cancelled == [f"job-{t}"]


def test_an_aborted_task_whose_job_ended_is_cancelled(ctx: ServerContext) -> None:
    t = add_task(ctx, "PendingCancel", seen_ago=10, abort=True)
    watch(ctx, {t: JobState.DONE})
    assert task(ctx, t).state == "Cancelled"


def test_a_job_the_executor_cannot_judge_is_judged_by_silence(ctx: ServerContext) -> None:
    quiet = add_task(ctx, "FullyExecuting", seen_ago=10)
    lost = add_task(ctx, "FullyExecuting", seen_ago=120)
    watch(ctx, {})
    assert task(ctx, quiet).state == "FullyExecuting"
    assert task(ctx, lost).state == "Failure"


def test_a_tick_with_every_agent_heard_of_writes_and_locks_nothing(ctx: ServerContext) -> None:
    """The scheduler runs twice a second for every server: with nothing to do it only reads
    (one query for queued tasks, one for the watched ones), whatever their number; a task that
    needs a change is the only one re-read and written."""
    healthy = [add_task(ctx, "FullyExecuting", seen_ago=1) for _ in range(5)]
    statements: list[tuple[str, str]] = []
    sqlalchemy.event.listen(
        ctx.db.engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, params, *_: statements.append((sql.lstrip(), repr(params))),
    )
    Scheduler(ctx).tick()
    ex = watch(ctx, dict.fromkeys(healthy, JobState.RUNNING))
    assert len(statements) == 3 and all(sql.startswith("SELECT") for sql, _ in statements)
    assert not ex.cancelled and {task(ctx, t).state for t in healthy} == {"FullyExecuting"}
    lost = add_task(ctx, "FullyExecuting", seen_ago=61)
    statements.clear()
    watch(ctx, {**dict.fromkeys(healthy, JobState.RUNNING), lost: JobState.RUNNING})
    assert task(ctx, lost).state == "Failure"
    assert any(sql.startswith("UPDATE") for sql, _ in statements)
    assert not [p for _, p in statements if any(t in p for t in healthy)], statements


def test_a_waiting_agent_hears_of_what_another_server_wrote(ctx: ServerContext) -> None:
    """The long-poll's re-read (every HPCSNAP_PEER_POLL_MS while an agent waits, for what a
    request to another server process wrote): quiet until a snapshot is requested, the periodic
    settings change, or the task is aborted."""
    from hpcsnap.server.api.agent import _news
    from hpcsnap.server.snapshots import create_snapshot

    uuid_ = add_task(ctx, "FullyExecuting", seen_ago=1)
    version = task(ctx, uuid_).snapshot_config_version
    assert not _news(ctx, uuid_, version)
    assert _news(ctx, uuid_, version + 1)
    with ctx.db.session() as s:
        snap = create_snapshot(s, s.get(Task, uuid_), kind="manual", bucket="snaps")  # type: ignore[arg-type]
    assert _news(ctx, uuid_, version)
    with ctx.db.session() as s:
        s.get(Snapshot, snap.id).status = "InProgress"  # type: ignore[union-attr]
    assert not _news(ctx, uuid_, version)
    with ctx.db.session() as s:
        s.get(Task, uuid_).abort_requested = True  # type: ignore[union-attr]
    assert _news(ctx, uuid_, version)
    assert _news(ctx, "no-such-task", version)
