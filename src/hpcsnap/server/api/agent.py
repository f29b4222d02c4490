"""Routes for agents (``/agent/tasks/{uuid}/...``), authenticated by the task's own credential.

An agent can only read and report on the one task its credential was issued for; the credential
is revoked when the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import (
    TERMINAL_STATES,
    AgentEvents,
    AgentSpec,
    LogReport,
    NewSnapshot,
    PeriodicConfig,
    ResourceFile,
    ResultsCommit,
    SnapshotCommit,
    SnapshotProgress,
    SnapshotRequest,
    SnapshotStatus,
    StateReport,
    TaskState,
    dump,
)
from hpcsnap.server import blobrefs, notify, retention, shells
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.deps import AnyCaller, Ctx
from hpcsnap.server.auth import Caller
from hpcsnap.server.context import ServerContext
from hpcsnap.server.db import LogChunk, Snapshot, Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.errors import Conflict, NotFound
from hpcsnap.server.events import EventType, record_log, record_progress, record_snapshot
from hpcsnap.server.lifecycle import lock_task, set_state
from hpcsnap.server.resume import agent_manifests
from hpcsnap.server.snapshots import as_request, commit_snapshot, create_snapshot, fail_abandoned

log = logging.getLogger(__name__)
router = APIRouter(prefix="/agent/tasks/{task_uuid}", tags=["agent"], include_in_schema=False)


def agent_caller(task_uuid: str, caller: AnyCaller) -> Caller:
    if caller.kind != "agent" or caller.task_uuid != task_uuid:
        raise NotFound(f"task {task_uuid} not found")
    return caller


Agent = Annotated[Caller, Depends(agent_caller)]


def _task(session: Session, task_uuid: str, *, seen: bool = True, lock: bool = False) -> Task:
    """The agent's task; ``seen`` records that its agent is alive; ``lock`` holds it
    (:func:`~hpcsnap.server.lifecycle.lock_task`) so that a state report, the opening of a
    snapshot and the scheduler's verdict (on this server or another) cannot overwrite or miss
    each other."""
    task = lock_task(session, task_uuid) if lock else session.get(Task, task_uuid)
    if task is None:
        raise NotFound(f"task {task_uuid} not found")
    if seen:
        task.agent_seen = utcnow()
    return task


def _periodic(task: Task) -> PeriodicConfig:
    return PeriodicConfig(
        interval=task.snapshot_interval,
        whitelist=task.snapshot_whitelist,
        blacklist=task.snapshot_blacklist,
        bucket=task.snapshot_bucket or task.result_bucket,
        bucket_prefix=task.snapshot_prefix,
        version=task.snapshot_config_version,
    )


def _resources(session: Session, task: Task) -> list[ResourceFile]:
    files: dict[str, ResourceFile] = {}
    for ref in task.resource_buckets:
        bucket = bx.get_bucket(session, task.owner_id, ref["bucketName"])
        prefix = ((ref.get("filtering") or {}).get("prefixFiltering") or {}).get("prefix") or ""
        strip = ((ref.get("resourcesTransformation") or {}).get("stripPrefix") or {}).get(
            "prefix"
        ) or ""
        for obj in bx.list_objects(session, bucket, prefix):
            path = obj.key[len(strip) :] if strip and obj.key.startswith(strip) else obj.key
            if not path or path.endswith("/"):
                continue
            files[path] = ResourceFile(
                path=path, digest=obj.digest, size=obj.size, mtime_ns=obj.mtime_ns
            )
    return list(files.values())


@router.get("/spec")
def spec(task_uuid: str, agent: Agent, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session() as session:
        task = _task(session, task_uuid)
        environment = {c["key"]: c["value"] for c in task.constants}
        resume_manifests, resume_error = agent_manifests(session, task)
        return dump(
            AgentSpec(
                uuid=task.uuid,
                command=task.command,
                environment=environment,
                resources=_resources(session, task),
                results_whitelist=task.results_whitelist,
                results_blacklist=task.results_blacklist,
                upload_results_on_cancellation=task.upload_results_on_cancellation,
                include_unchanged_inputs=task.include_unchanged_inputs,
                wall_time_limit=task.wall_time_limit,
                storage=ctx.backend.describe(),
                namespace=bx.namespace(task.owner_id),
                periodic=_periodic(task),
                snapshot_whitelist=task.snapshot_whitelist,
                snapshot_blacklist=task.snapshot_blacklist,
                soft_limit=ctx.settings.snapshot_soft_limit,
                hard_limit=ctx.settings.snapshot_hard_limit,
                keep_workdir=ctx.settings.keep_workdirs,
                store_ahead=ctx.settings.store_ahead,
                task_user=ctx.settings.task_user,
                resume_manifests=resume_manifests,
                resume_error=resume_error,
            )
        )


@router.post("/state")
def report_state(task_uuid: str, body: StateReport, agent: Agent, ctx: Ctx) -> dict[str, Any]:
    with ctx.db.session() as session:
        task = _task(session, task_uuid, lock=True)
        if body.job_mode:
            task.job_mode = body.job_mode
        state = body.state
        if task.abort_requested and state in (TaskState.EXECUTING, TaskState.UPLOADING):
            state = TaskState.PENDING_CANCEL
        set_state(session, task, state, error=body.error, exit_code=body.exit_code)
        return {"state": task.state}


@router.post("/logs")
def report_logs(task_uuid: str, body: LogReport, agent: Agent, ctx: Ctx) -> dict[str, int]:
    with ctx.db.session() as session:
        _task(session, task_uuid)
        for stream, text in (("stdout", body.stdout), ("stderr", body.stderr)):
            if not text:
                continue
            end = session.scalar(
                select(func.max(LogChunk.offset + func.length(LogChunk.data))).where(
                    LogChunk.task_uuid == task_uuid, LogChunk.stream == stream
                )
            )
            chunk = LogChunk(task_uuid=task_uuid, stream=stream, offset=end or 0, data=text)
            session.add(chunk)
            record_log(session, chunk)
    return {"ok": 1}


def _events(ctx: ServerContext, task_uuid: str, *, seen: bool) -> AgentEvents:
    with ctx.db.session() as session:
        task = _task(session, task_uuid, seen=seen)
        pending = session.scalars(
            select(Snapshot)
            .where(
                Snapshot.task_uuid == task_uuid,
                Snapshot.status == SnapshotStatus.TRIGGERED.value,
            )
            .order_by(Snapshot.trigger_date)
        ).all()
        return AgentEvents(
            abort=task.abort_requested,
            deleted=task.deleted,
            periodic=_periodic(task),
            snapshots=[as_request(s) for s in pending],
        )


WAKE_CHECK = 0.2
"""Seconds between a waiting long-poll's in-process checks: its client gone, a shell due."""


@router.get("/events")
async def events(
    task_uuid: str, agent: Agent, ctx: Ctx, request: Request, wait: float = 0, version: int = -1
) -> dict[str, Any]:
    """Long-poll: answers as soon as there is something to do, or after ``wait`` seconds.

    Only the start of a poll counts as a sign of life: an agent that died mid-poll is not
    kept "alive" by its abandoned request.
    """
    deadline = time.monotonic() + min(max(wait, 0.0), 30.0)
    peer_poll = ctx.settings.peer_poll_ms / 1000
    first = True
    with notify.subscribe(task_uuid) as woken:
        while True:
            woken.clear()
            ev = await run_in_threadpool(_events, ctx, task_uuid, seen=first)
            ev.shells = shells.offer(task_uuid)  # users waiting for a shell (this process)
            first = False
            if (
                ev.abort
                or ev.snapshots
                or ev.shells
                or ev.periodic.version != version
                or ev.deleted
            ):
                return dump(ev)
            next_read = time.monotonic() + peer_poll
            while True:
                if time.monotonic() >= deadline or await request.is_disconnected():
                    return dump(ev)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=WAKE_CHECK)
                if woken.is_set() or shells.due(task_uuid):
                    break
                # another server process may have written something for this agent
                now = time.monotonic()
                if now >= next_read:
                    next_read = now + peer_poll
                    if await run_in_threadpool(_news, ctx, task_uuid, version):
                        break


_NEWS_FIELDS = ("abort_requested", "deleted", "snapshot_config_version")
"""What a task's agent must hear of, besides a snapshot requested (see :func:`_news`)."""


@event.listens_for(Session, "after_flush")
def _wake_agents(session: Session, _flush: object) -> None:
    """Whatever a transaction of this process writes that :func:`_news` would see (a snapshot
    requested, an abort, a deletion, new periodic settings), whichever code wrote it, wakes the
    task's waiting long-poll when it is committed."""
    for obj in session.new:
        if isinstance(obj, Snapshot) and obj.status == SnapshotStatus.TRIGGERED.value:
            notify.wake_after_commit(session, obj.task_uuid)
    for obj in session.dirty:
        if isinstance(obj, Task):
            attrs = inspect(obj).attrs
            if any(attrs[name].history.has_changes() for name in _NEWS_FIELDS):
                notify.wake_after_commit(session, obj.uuid)


def _news(ctx: ServerContext, task_uuid: str, version: int) -> bool:
    """Whether the agent's long-poll has something to answer (see :func:`_events`), in one
    small read: it runs every ``HPCSNAP_PEER_POLL_MS`` for every waiting agent."""
    triggered = (
        select(Snapshot.id)
        .where(
            Snapshot.task_uuid == task_uuid,
            Snapshot.status == SnapshotStatus.TRIGGERED.value,
        )
        .exists()
    )
    with ctx.db.session() as session:
        row = session.execute(
            select(
                Task.abort_requested, Task.deleted, Task.snapshot_config_version, triggered
            ).where(Task.uuid == task_uuid)
        ).first()
    return row is None or bool(row[0] or row[1] or row[2] != version or row[3])


@router.post("/results")
def commit_results(task_uuid: str, body: ResultsCommit, agent: Agent, ctx: Ctx) -> dict[str, int]:
    with ctx.db.session() as session:
        task = _task(session, task_uuid)
        assert task.result_bucket is not None
        bucket = bx.ensure_bucket(session, task.owner_id, task.result_bucket)
        store = ctx.store(task.owner_id)
        blobrefs.check_stored(session, store, task.owner_id, {f.digest for f in body.files})
        count = bx.publish(session, bucket, "", body.files, replace=True)
        task.results_count += 1
        if body.warnings:
            task.errors = [
                *task.errors,
                *({"code": "ResultsWarning", "message": w, "debug": ""} for w in body.warnings),
            ]
        return {"files": count}


@router.post("/snapshots")
def new_snapshot(task_uuid: str, body: NewSnapshot, agent: Agent, ctx: Ctx) -> dict[str, Any]:
    """A snapshot the agent starts itself (periodic tick, in-job request, final capture).

    Refused once the task has ended: its agent's credential is revoked then, but it was checked
    before this transaction, and the ending fails only the snapshots it can see; the task's lock
    orders the two."""
    with ctx.db.session() as session:
        task = _task(session, task_uuid, lock=True)
        if task.state in TERMINAL_STATES:
            raise Conflict(f"task {task_uuid} has ended ({task.state}): no new snapshot")
        snap = create_snapshot(
            session,
            task,
            kind=body.kind,
            label=body.label,
            whitelist=body.whitelist,
            blacklist=body.blacklist,
            bucket=body.bucket,
            bucket_prefix=body.bucket_prefix,
            status=SnapshotStatus.IN_PROGRESS,
        )
        request: SnapshotRequest = as_request(snap)
        return dump(request)


def _snapshot(session: Session, task_uuid: str, snapshot_id: str) -> Snapshot:
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.task_uuid != task_uuid:
        raise NotFound(f"snapshot {snapshot_id} not found")
    return snap


@router.post("/snapshots/{snapshot_id}/progress")
def snapshot_progress(
    task_uuid: str, snapshot_id: str, body: SnapshotProgress, agent: Agent, ctx: Ctx
) -> dict[str, str]:
    with ctx.db.session() as session:
        _task(session, task_uuid)
        snap = _snapshot(session, task_uuid, snapshot_id)
        if snap.status in (SnapshotStatus.SUCCESS, SnapshotStatus.FAILURE):
            raise Conflict(f"snapshot {snapshot_id} is already {snap.status}")
        if body.status == SnapshotStatus.SUCCESS:
            raise Conflict("a snapshot becomes Success only by committing its files")
        if body.status == SnapshotStatus.IN_PROGRESS:
            fail_abandoned(session, snap)
        snap.status = body.status.value
        snap.size_to_upload = body.size_to_upload
        snap.transferred_size = body.transferred_size
        snap.files_total = body.files_total
        snap.files_done = body.files_done
        if body.error:
            snap.error = body.error
        snap.last_update_date = utcnow()
        if body.status == SnapshotStatus.FAILURE:
            record_snapshot(session, snap, EventType.SNAPSHOT_FAILURE)
        else:
            record_progress(session, snap)
        return {"status": snap.status}


@router.post("/snapshots/{snapshot_id}/commit")
def snapshot_commit(
    task_uuid: str, snapshot_id: str, body: SnapshotCommit, agent: Agent, ctx: Ctx
) -> dict[str, str]:
    with ctx.db.session() as session:
        task = _task(session, task_uuid)
        snap = _snapshot(session, task_uuid, snapshot_id)
        commit_snapshot(session, ctx.store(task.owner_id), task, snap, body)
        answer = {"status": snap.status, "directory": snap.directory or ""}
        periodic, owner_id = snap.kind == "periodic", task.owner_id
    if periodic:
        try:
            retention.apply_retention(ctx.db, ctx.store(owner_id), task_uuid)
        except Exception:  # the commit stands; what is left is collected next time
            log.exception("retention after snapshot %s failed", snapshot_id)
    return answer
