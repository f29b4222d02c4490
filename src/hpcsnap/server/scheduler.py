"""The dispatch-and-watch loop: starts queued tasks' agents and notices agents that died.

Everything it knows is in the database, so it survives restarts, and several server processes
may run it against one database: a task is claimed by an atomic UPDATE before it is started, and
each watched task is re-read under a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL) before
it is changed. Executors leave out of their answer the jobs they cannot judge (another
machine's local processes), which are then judged by their agent's silence alone.

What the executor says of an agent's job (:class:`~hpcsnap.executors.base.JobState`):

- ``PENDING`` (queued): the agent cannot speak yet, so its silence is not held against it; an
  abort of such a task cancels the job at once and the task ends ``Cancelled``.
- ended (``TERMINAL_JOB_STATES``) without the agent reporting the end within ``EXIT_GRACE``:
  the task ends ``Failure`` with the reason of that state (time limit, memory, node failure,
  preemption...), or ``Cancelled`` if it was being aborted.
- otherwise an agent silent for ``agent_timeout`` seconds is lost: ``Failure``, job cancelled.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Literal, Protocol

from sqlalchemy import select, update

from hpcsnap.agent.protocol import ACTIVE_STATES, TaskState
from hpcsnap.executors.base import END_REASONS, TERMINAL_JOB_STATES, AgentLaunch, JobState
from hpcsnap.server.api.tasks import active_count
from hpcsnap.server.auth import issue_token
from hpcsnap.server.context import ServerContext
from hpcsnap.server.db import Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.events import record_state
from hpcsnap.server.lifecycle import lock_task, set_state

log = logging.getLogger(__name__)

#: How long a dead agent's task waits for the agent's last report before it is failed.
EXIT_GRACE = dt.timedelta(seconds=5)
#: How long an abort may take before the executor is told to stop the agent.
ABORT_GRACE = dt.timedelta(seconds=30)
#: How often a queued job's task is marked as heard of (its agent cannot speak yet).
QUEUED_REFRESH = dt.timedelta(seconds=5)


class Scheduler:
    def __init__(self, ctx: ServerContext, *, period: float = 0.5) -> None:
        self.ctx = ctx
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpcsnap-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed; retrying")
            self._stop.wait(self.period)

    def tick(self) -> None:
        self.dispatch()
        self.watch()

    def dispatch(self) -> None:
        executor, db = self.ctx.executor, self.ctx.db
        waiting = select(Task.uuid).where(
            Task.state == TaskState.SUBMITTED.value, Task.executor == executor.name
        )
        with db.session() as s:
            if s.scalar(waiting.limit(1)) is None:  # the usual tick: one cheap read
                return
            capacity = executor.capacity()
            free = 1000 if capacity is None else capacity - active_count(s, executor.name)
            if free <= 0:
                return
            queued = s.scalars(waiting.order_by(Task.creation_date).limit(free)).all()
        for task_uuid in queued:
            self._start(task_uuid)

    def _start(self, task_uuid: str) -> None:
        now = utcnow()
        with self.ctx.db.session() as s:
            claimed = s.execute(  # type: ignore[attr-defined]
                update(Task)
                .where(Task.uuid == task_uuid, Task.state == TaskState.SUBMITTED.value)
                .values(
                    state=TaskState.DISPATCHED.value,
                    previous_state=TaskState.SUBMITTED.value,
                    previous_state_transition_time=Task.state_transition_time,
                    state_transition_time=now,
                    agent_seen=now,
                )
            ).rowcount
            if not claimed:
                return
            task = s.get(Task, task_uuid)
            assert task is not None
            record_state(s, task, TaskState.SUBMITTED.value)
            token = issue_token(s, task.owner_id, kind="agent", task_uuid=task_uuid)
            wall = task.wall_time_limit
        launch = AgentLaunch(
            task_uuid=task_uuid,
            server_url=self.ctx.settings.base_url,
            token=token,
            wall_time_limit=wall,
        )
        try:
            job_id = self.ctx.executor.submit(launch)
        except Exception as exc:
            log.exception("could not start the agent of task %s", task_uuid)
            with self.ctx.db.session() as s:
                task = s.get(Task, task_uuid)
                if task is not None:
                    set_state(s, task, TaskState.FAILURE, error=f"could not start its agent: {exc}")
            return
        with self.ctx.db.session() as s:
            task = s.get(Task, task_uuid)
            if task is not None:
                task.executor_id = job_id

    def watch(self) -> None:
        """Judge each active task by its job's state and its agent's last sign of life. In the
        usual case (every agent heard of lately) this is one read and nothing is locked or
        written; a task that needs a change is re-read under its row lock and judged again."""
        executor = self.ctx.executor
        with self.ctx.db.session() as s:
            rows = s.execute(
                select(
                    Task.uuid,
                    Task.executor_id,
                    Task.state,
                    Task.agent_seen,
                    Task.state_transition_time,
                    Task.abort_requested,
                )
                .where(
                    Task.executor == executor.name,
                    Task.state.in_([st.value for st in ACTIVE_STATES]),
                    Task.executor_id.is_not(None),
                )
                .order_by(Task.uuid)  # rows are locked in this order: no deadlock between servers
            ).all()
        if not rows:
            return
        states = executor.status([row.executor_id for row in rows if row.executor_id])
        now = utcnow()
        timeout = dt.timedelta(seconds=self.ctx.settings.agent_timeout)
        due = [row.uuid for row in rows if _verdict(row, states, now, timeout) is not None]
        if not due:
            return
        to_cancel: list[str] = []
        with self.ctx.db.session() as s:
            for task_uuid in due:
                task = lock_task(s, task_uuid)
                if task is None or task.executor_id is None:
                    continue
                verdict = _verdict(task, states, now, timeout)
                job_id = task.executor_id
                if verdict == "cancel-queued":
                    to_cancel.append(job_id)
                    set_state(s, task, TaskState.CANCELLED, error="aborted before it started")
                elif verdict == "queued":
                    task.agent_seen = now
                elif verdict == "ended":
                    if task.abort_requested:
                        set_state(s, task, TaskState.CANCELLED)
                    else:
                        reason = END_REASONS[states[job_id]]
                        error = f"{reason} (agent job {job_id})"
                        set_state(s, task, TaskState.FAILURE, error=error)
                elif verdict == "lost":
                    set_state(
                        s,
                        task,
                        TaskState.FAILURE,
                        error=f"lost contact with its agent for {timeout.seconds} s",
                    )
                    to_cancel.append(job_id)
                elif verdict == "stop":
                    to_cancel.append(job_id)
        if to_cancel:
            executor.cancel(to_cancel)


class _Watched(Protocol):
    """What :func:`_verdict` reads of a task: a row of :meth:`Scheduler.watch`'s query, or the
    task itself once locked."""

    executor_id: str | None
    state: str
    agent_seen: dt.datetime | None
    state_transition_time: dt.datetime
    abort_requested: bool


Verdict = Literal["cancel-queued", "queued", "ended", "lost", "stop"]


def _verdict(
    task: _Watched, states: dict[str, JobState], now: dt.datetime, timeout: dt.timedelta
) -> Verdict | None:
    """What the watch does to an active task, or None: its job is queued and aborted
    (``cancel-queued``) or queued for a while (``queued``: marked as heard of), ended without its
    agent's last report (``ended``), its agent silent too long (``lost``), or its abort taking
    too long (``stop``: the job is stopped). A job that ended less than :data:`EXIT_GRACE` ago
    gets None even when its abort is overdue: there is nothing left to stop, and its agent's
    last report (or ``ended``, after the grace) settles the task."""
    if task.state not in ACTIVE_STATES or task.executor_id is None:
        return None
    seen = task.agent_seen or task.state_transition_time
    state = states.get(task.executor_id)
    if state is JobState.PENDING:
        if task.state == TaskState.PENDING_CANCEL:
            return "cancel-queued"
        return "queued" if now - seen > QUEUED_REFRESH else None
    if state in TERMINAL_JOB_STATES:
        return "ended" if now - seen > EXIT_GRACE else None
    if now - seen > timeout:
        return "lost"
    if task.state == TaskState.PENDING_CANCEL and now - task.state_transition_time > ABORT_GRACE:
        return "stop"
    return None
