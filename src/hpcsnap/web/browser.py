"""The snapshot browser: a snapshot's file tree, file downloads, the whole snapshot (or the
task's results) as a streamed ``.tar.gz`` or ``.zip``, and the comparison with another snapshot
of the task or with its final results (:mod:`hpcsnap.server.contents` does the work)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse

from hpcsnap.agent.protocol import TERMINAL_STATES
from hpcsnap.server import bucketindex as bx
from hpcsnap.server import retention
from hpcsnap.server.api.buckets import iter_blob
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.contents import (
    DOWNLOAD_HEADERS,
    RESULTS,
    archive_response,
    check_format,
    check_readable,
    compare,
    disposition,
    previous_success,
    results_contents,
    snapshot_contents,
    snapshot_name,
)
from hpcsnap.server.errors import NotFound
from hpcsnap.snapshot.diff import Diff
from hpcsnap.web import queries
from hpcsnap.web.deps import Me, WebRoute, check_csrf, server_ctx
from hpcsnap.web.render import page
from hpcsnap.web.tree import FULL_TREE_LIMIT, build_tree
from hpcsnap.web.tree import find as find_folder

__all__ = ["disposition", "router", "snapshot_name"]

router = APIRouter(route_class=WebRoute, include_in_schema=False)
log = logging.getLogger(__name__)
#: Files up to this size get a "view" link (shown as plain text in the browser).
VIEW_LIMIT = 4 * 1024**2
#: Paths listed per kind of change on the comparison page.
DIFF_LIMIT = 2000


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}")
def browse(request: Request, task_uuid: str, snapshot_id: str, user: Me, path: str = "") -> Any:
    with server_ctx(request).db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        directory = snap.directory or ""
        rows = queries.snapshot_files(s, user.id, snap)
        root = build_tree((o.key[len(directory) :], o.size, o.mtime_ns) for o in rows)
        previous = previous_success(s, snap)
        others = [x for x in queries.snapshots_of(s, task.uuid) if x.status == "Success"]
        ended = task.state in TERMINAL_STATES
    folder = find_folder(root, path) if path else root
    if folder is None:
        raise NotFound(f"no folder {path!r} in this snapshot")
    crumbs = []
    acc = ""
    for part in [p for p in path.split("/") if p]:
        acc += part + "/"
        crumbs.append((part, acc))
    return page(
        "snapshot.html",
        user=user,
        csrf=user.csrf,
        nav="tasks",
        task=task,
        snap=snap,
        name=snapshot_name(snap.directory),
        root=root,
        folder=folder,
        path=folder.path,
        crumbs=crumbs,
        full=folder.files <= FULL_TREE_LIMIT,
        previous=previous,
        others=[x for x in others if x.id != snap.id],
        ended=ended,
        view_limit=VIEW_LIMIT,
        base=f"/tasks/{task.uuid}/snapshots/{snap.id}",
    )


@router.post("/tasks/{task_uuid}/snapshots/{snapshot_id}/delete")
async def delete(request: Request, task_uuid: str, snapshot_id: str, user: Me) -> Response:
    """Delete the snapshot (see :mod:`hpcsnap.server.retention`), back to the task page."""
    await check_csrf(request, user, await request.form())
    ctx = server_ctx(request)

    def apply() -> None:
        with ctx.db.session() as s:
            task = get_task(s, user.caller, task_uuid)
            retention.delete_snapshot(s, queries.snapshot_of(s, task, snapshot_id))
        retention.collect_pending(ctx.db, ctx.store(user.id), user.id)

    await run_in_threadpool(apply)
    return RedirectResponse(f"/tasks/{task_uuid}?done=deleted", status_code=303)


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/files/{path:path}")
def download(
    request: Request, task_uuid: str, snapshot_id: str, path: str, user: Me, view: bool = False
) -> Response:
    ctx = server_ctx(request)
    with ctx.db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        if snap.status != "Success" or not snap.bucket:
            raise NotFound(f"snapshot {snapshot_id} is {snap.status}: it holds no files")
        try:
            bucket = bx.get_bucket(s, user.id, snap.bucket)
            obj = bx.get_object(s, bucket, (snap.directory or "") + path)
        except NotFound:
            raise NotFound(f"no file {path!r} in this snapshot") from None
    store = ctx.store(user.id)
    if not store.has(obj.digest):
        raise NotFound(f"the content of {path!r} is missing from the store")
    inline = view and obj.size <= VIEW_LIMIT
    headers = {
        **DOWNLOAD_HEADERS,
        "Content-Length": str(obj.size),
        "Content-Disposition": disposition(
            "inline" if inline else "attachment", path.rsplit("/", 1)[-1]
        ),
    }
    return StreamingResponse(
        iter_blob(store, obj.digest),
        media_type="text/plain; charset=utf-8" if inline else "application/octet-stream",
        headers=headers,
    )


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/archive.{fmt}")
def archive(request: Request, task_uuid: str, snapshot_id: str, fmt: str, user: Me) -> Response:
    """The whole snapshot as a streamed ``.tar.gz`` or ``.zip``."""
    ctx = server_ctx(request)
    store = ctx.store(user.id)
    with ctx.db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        if snap.status != "Success" or snap.deleted_at is not None:
            raise NotFound(f"snapshot {snapshot_id} is {snap.status}: it holds no files")
        check_format(fmt)
        contents = snapshot_contents(s, store, task, snap)
    return archive_response(store, contents, fmt)


@router.get("/tasks/{task_uuid}/results/archive.{fmt}")
def results_archive(request: Request, task_uuid: str, fmt: str, user: Me) -> Response:
    """The task's final results as a streamed ``.tar.gz`` or ``.zip``."""
    ctx = server_ctx(request)
    with ctx.db.session() as s:
        check_format(fmt)
        contents = results_contents(s, get_task(s, user.caller, task_uuid))
    return archive_response(ctx.store(user.id), contents, fmt)


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/diff")
def compare_view(
    request: Request, task_uuid: str, snapshot_id: str, user: Me, against: str = ""
) -> Any:
    """What changed from another snapshot (the previous one by default) to this one, or from
    this one to the final results (``against=results``)."""
    ctx = server_ctx(request)
    store = ctx.store(user.id)
    with ctx.db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = check_readable(queries.snapshot_of(s, task, snapshot_id))
        results = against == RESULTS
        other = None
        if not results:
            other = (
                check_readable(queries.snapshot_of(s, task, against))
                if against
                else previous_success(s, snap)
            )
        choices = [
            x
            for x in queries.snapshots_of(s, task.uuid)
            if x.status == "Success" and x.deleted_at is None and x.id != snap.id
        ]
        ended = task.state in TERMINAL_STATES
        result: Diff | None = None
        this = snapshot_contents(s, store, task, snap)
        if results:
            old, new = this, results_contents(s, task)
        elif other is not None:
            old, new = snapshot_contents(s, store, task, other), this
        if results or other is not None:
            result = compare(old, new)
    return page(
        "diff.html",
        user=user,
        csrf=user.csrf,
        nav="tasks",
        task=task,
        snap=snap,
        other=other,
        results=results,
        ended=ended,
        name=snapshot_name(snap.directory),
        other_name=snapshot_name(other.directory) if other else "",
        choices=choices,
        result=result,
        limit=DIFF_LIMIT,
        base=f"/tasks/{task.uuid}/snapshots/{snap.id}",
    )
