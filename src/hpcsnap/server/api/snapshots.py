"""Snapshots of a task: manual (``/snapshot``), periodic settings, status and listing."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from hpcsnap.agent.protocol import RUNNING_STATES, TERMINAL_STATES
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.deps import Ctx, DbSession, User
from hpcsnap.server.api.tasks import check_interval, check_regex, get_task
from hpcsnap.server.db import Snapshot
from hpcsnap.server.errors import BadRequest, Conflict, NotFound
from hpcsnap.server.retention import apply_retention, check_retention
from hpcsnap.server.snapshots import check_label, create_snapshot
from hpcsnap.server.taskviews import snapshot_json

router = APIRouter(tags=["snapshots"])


class SnapshotBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    whitelist: str | None = None
    blacklist: str | None = None
    bucket: str | None = None
    bucket_prefix: str | None = Field(default=None, alias="bucketPrefix")
    label: str | None = None


class PeriodicBody(SnapshotBody):
    interval: int
    #: Keep the last N periodic snapshots (null: keep all); left out: unchanged.
    retention: int | None = None


async def _body(request: Request, model: type[SnapshotBody]) -> Any:
    """Parse a JSON body that may be empty (the qarnot SDK sends some POSTs without one)."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        raise BadRequest(f"{loc}: {err['msg']}") from None


def _check_target(body: SnapshotBody) -> None:
    check_regex("whitelist", body.whitelist)
    check_regex("blacklist", body.blacklist)
    check_label(body.label)
    if body.bucket:
        bx.check_bucket_name(body.bucket)
    bx.check_prefix(body.bucket_prefix)


@router.post("/tasks/{task_uuid}/snapshot")
async def trigger(task_uuid: str, request: Request, ctx: Ctx, user: User) -> dict[str, str]:
    """Take a snapshot now. Answers at once with its id; poll ``/snapshot/{id}`` for status."""
    body = await _body(request, SnapshotBody)
    _check_target(body)
    with ctx.db.session() as session:
        task = get_task(session, user, task_uuid, lock=True)
        if task.state not in RUNNING_STATES:
            raise Conflict(
                f"task {task_uuid} is {task.state}: only a running task (FullyExecuting) "
                "can be snapshotted"
            )
        snap = create_snapshot(
            session,
            task,
            kind="manual",
            label=body.label,
            whitelist=body.whitelist,
            blacklist=body.blacklist,
            bucket=body.bucket,
            bucket_prefix=body.bucket_prefix,
        )
        return {"id": snap.id}


@router.post("/tasks/{task_uuid}/snapshot/periodic")
async def periodic(task_uuid: str, request: Request, ctx: Ctx, user: User) -> dict[str, Any]:
    """Set (or with interval 0, stop) periodic snapshots; filters given here become the
    task's snapshot filters, ones left out keep their current value."""
    body = await _body(request, PeriodicBody)
    check_interval(ctx.settings, body.interval)
    _check_target(body)
    with ctx.db.session() as session:
        task = get_task(session, user, task_uuid, lock=True)
        if task.state in TERMINAL_STATES:
            raise Conflict(f"task {task_uuid} has ended ({task.state})")
        task.snapshot_interval = body.interval
        if body.whitelist is not None:
            task.snapshot_whitelist = body.whitelist or None
        if body.blacklist is not None:
            task.snapshot_blacklist = body.blacklist or None
        if body.bucket:
            bx.ensure_bucket(session, task.owner_id, body.bucket)
            task.snapshot_bucket = body.bucket
        if body.bucket_prefix is not None:
            task.snapshot_prefix = bx.check_prefix(body.bucket_prefix) or None
        if "retention" in body.model_fields_set:
            task.snapshot_retention = check_retention(body.retention, "retention")
        task.snapshot_config_version += 1
        answer = {
            "interval": task.snapshot_interval,
            "whitelist": task.snapshot_whitelist,
            "blacklist": task.snapshot_blacklist,
            "bucket": task.snapshot_bucket or task.result_bucket,
            "bucketPrefix": task.snapshot_prefix,
            "retention": task.snapshot_retention,
        }
    apply_retention(ctx.db, ctx.store(user.user_id), task_uuid)
    return answer


@router.get("/tasks/{task_uuid}/snapshot/{snapshot_id}")
def status(task_uuid: str, snapshot_id: str, user: User, session: DbSession) -> dict[str, Any]:
    get_task(session, user, task_uuid)
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.task_uuid != task_uuid:
        raise NotFound(f"snapshot {snapshot_id} of task {task_uuid} not found")
    return snapshot_json(snap)


@router.get("/tasks/{task_uuid}/snapshots")
def list_snapshots(
    task_uuid: str, user: User, session: DbSession, deleted: bool = False
) -> list[dict[str, Any]]:
    """The task's snapshots, oldest first; deleted ones only with ``?deleted=true``."""
    get_task(session, user, task_uuid)
    query = select(Snapshot).where(Snapshot.task_uuid == task_uuid)
    if not deleted:
        query = query.where(Snapshot.deleted_at.is_(None))
    rows = session.scalars(query.order_by(Snapshot.trigger_date))
    return [snapshot_json(s) for s in rows]
