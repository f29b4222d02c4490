"""What snapshots and results hold: the diff between two of them, and each as a streamed archive.

- ``GET /tasks/{uuid}/snapshots/{id}/diff?against={id|results}``: what changed from ``against``
  (by default the previous successful snapshot; none: everything is added) to snapshot ``id``.
- ``GET /tasks/{uuid}/results/diff?against={id}``: what changed from a snapshot to the results.
- ``GET /tasks/{uuid}/snapshots/{id}/archive?format=tar.gz|zip`` and
  ``GET /tasks/{uuid}/results/archive?format=...``: streamed, nothing built first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import StreamingResponse

from hpcsnap.server.api.deps import Ctx, User
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.contents import (
    RESULTS,
    Contents,
    archive_response,
    check_format,
    check_readable,
    compare,
    diff_json,
    other_snapshot,
    previous_success,
    results_contents,
    snapshot_contents,
    snapshot_of,
)
from hpcsnap.server.errors import BadRequest

router = APIRouter(tags=["snapshots"])
Limit = Annotated[int | None, Query(ge=0, description="At most this many paths per list.")]
Format = Annotated[str, Query(alias="format", description="tar.gz or zip")]


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/diff")
def snapshot_diff(
    task_uuid: str,
    snapshot_id: str,
    ctx: Ctx,
    user: User,
    against: str | None = None,
    limit: Limit = None,
) -> dict[str, Any]:
    """What changed from ``against`` (a snapshot id of the same task, or ``results``; by
    default the previous successful snapshot) to this snapshot: added, removed and modified
    paths (content, kind or symlink target), mode-only changes, and byte totals."""
    store = ctx.store(user.user_id)
    with ctx.db.session() as s:
        task = get_task(s, user, task_uuid)
        snap = check_readable(snapshot_of(s, task, snapshot_id))
        if against == RESULTS:
            old: Contents | None = results_contents(s, task)
        elif against:
            old = snapshot_contents(
                s, store, task, check_readable(other_snapshot(s, task, against))
            )
        else:
            previous = previous_success(s, snap)
            old = snapshot_contents(s, store, task, previous) if previous else None
        new = snapshot_contents(s, store, task, snap)
    if old is None:
        empty = Contents("", {}, new.links, "", "")
        return diff_json(compare(empty, new), None, new.ref, limit=limit)
    return diff_json(compare(old, new), old.ref, new.ref, limit=limit)


@router.get("/tasks/{task_uuid}/results/diff")
def results_diff(
    task_uuid: str, ctx: Ctx, user: User, against: str = "", limit: Limit = None
) -> dict[str, Any]:
    """What changed from snapshot ``against`` to the task's final results."""
    store = ctx.store(user.user_id)
    with ctx.db.session() as s:
        task = get_task(s, user, task_uuid)  # ownership before the query's checks
        if not against:
            raise BadRequest("against: name the snapshot to compare the results with")
        if against == RESULTS:
            raise BadRequest("against: name a snapshot to compare the results with")
        old = snapshot_contents(s, store, task, check_readable(other_snapshot(s, task, against)))
        new = results_contents(s, task)
    return diff_json(compare(old, new), old.ref, new.ref, limit=limit)


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/archive")
def snapshot_archive(
    task_uuid: str, snapshot_id: str, ctx: Ctx, user: User, fmt: Format = "tar.gz"
) -> StreamingResponse:
    """The snapshot's files (and symlinks) under one top directory, named after it."""
    check_format(fmt)
    store = ctx.store(user.user_id)
    with ctx.db.session() as s:
        task = get_task(s, user, task_uuid)
        snap = check_readable(snapshot_of(s, task, snapshot_id))
        contents = snapshot_contents(s, store, task, snap)
    return archive_response(store, contents, fmt)


@router.get("/tasks/{task_uuid}/results/archive")
def results_archive(task_uuid: str, ctx: Ctx, user: User, fmt: Format = "tar.gz") -> Any:
    """The task's final results under one top directory ``<task name>-results``."""
    check_format(fmt)
    with ctx.db.session() as s:
        contents = results_contents(s, get_task(s, user, task_uuid))
    return archive_response(ctx.store(user.user_id), contents, fmt)
