"""The snapshot browser: a snapshot's file tree, file downloads, the whole snapshot as a streamed
``.tar.gz``, and the comparison with another snapshot of the task."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse

from hpcsnap.blobstore.base import BlobError
from hpcsnap.server import bucketindex as bx
from hpcsnap.server import retention
from hpcsnap.server.api.buckets import iter_blob
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.errors import NotFound
from hpcsnap.snapshot.manifest import Manifest, ManifestError
from hpcsnap.web import queries
from hpcsnap.web.archive import Member, tar_gz
from hpcsnap.web.deps import Me, WebRoute, check_csrf, server_ctx
from hpcsnap.web.render import page
from hpcsnap.web.submit import slug
from hpcsnap.web.tree import (
    FULL_TREE_LIMIT,
    Comparison,
    build_tree,
    compare_keys,
    compare_manifests,
)
from hpcsnap.web.tree import find as find_folder

router = APIRouter(route_class=WebRoute, include_in_schema=False)
log = logging.getLogger(__name__)
#: Files up to this size get a "view" link (shown as plain text in the browser).
VIEW_LIMIT = 4 * 1024**2
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-cache",
}


def snapshot_name(directory: str | None) -> str:
    """``snapshots/2026-...Z_label/`` → ``2026-...Z_label``."""
    return (directory or "").rstrip("/").rsplit("/", 1)[-1] or "snapshot"


def disposition(kind: str, filename: str) -> str:
    """A Content-Disposition header value safe for any file name."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;%' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}")
def browse(request: Request, task_uuid: str, snapshot_id: str, user: Me, path: str = "") -> Any:
    with server_ctx(request).db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        directory = snap.directory or ""
        rows = queries.snapshot_files(s, user.id, snap)
        root = build_tree((o.key[len(directory) :], o.size, o.mtime_ns) for o in rows)
        previous = queries.previous_success(s, snap)
        others = [x for x in queries.snapshots_of(s, task.uuid) if x.status == "Success"]
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


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/archive.tar.gz")
def archive(request: Request, task_uuid: str, snapshot_id: str, user: Me) -> Response:
    ctx = server_ctx(request)
    with ctx.db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        if snap.status != "Success":
            raise NotFound(f"snapshot {snapshot_id} is {snap.status}: it holds no files")
        directory = snap.directory or ""
        top = snapshot_name(directory)
        members = [
            Member(top + "/" + o.key[len(directory) :], o.digest, o.size, o.mtime_ns)
            for o in queries.snapshot_files(s, user.id, snap)
        ]
        filename = f"{slug(task.name)}-{top}.tar.gz"
    store = ctx.store(user.id)

    def opener(digest: str) -> Any:
        try:
            return store.open(digest)
        except BlobError:
            log.exception("blob %s missing while archiving snapshot %s", digest, snapshot_id)
            raise

    return StreamingResponse(
        tar_gz(members, opener),
        media_type="application/gzip",
        headers={**DOWNLOAD_HEADERS, "Content-Disposition": disposition("attachment", filename)},
    )


def _manifest(request: Request, owner_id: int, digest: str | None) -> Manifest | None:
    if not digest:
        return None
    try:
        with server_ctx(request).store(owner_id).open(digest) as f:
            return Manifest.from_bytes(f.read())
    except (BlobError, ManifestError, ValueError):
        log.warning("manifest %s unreadable; comparing bucket keys instead", digest)
        return None


@router.get("/tasks/{task_uuid}/snapshots/{snapshot_id}/diff")
def compare(request: Request, task_uuid: str, snapshot_id: str, user: Me, against: str = "") -> Any:
    with server_ctx(request).db.session() as s:
        task = get_task(s, user.caller, task_uuid)
        snap = queries.snapshot_of(s, task, snapshot_id)
        other = (
            queries.snapshot_of(s, task, against) if against else queries.previous_success(s, snap)
        )
        choices = [
            x
            for x in queries.snapshots_of(s, task.uuid)
            if x.status == "Success" and x.id != snap.id
        ]
        result: Comparison | None = None
        if other is not None:
            old_m = _manifest(request, user.id, other.manifest_digest)
            new_m = _manifest(request, user.id, snap.manifest_digest)
            if old_m is not None and new_m is not None:
                result = compare_manifests(old_m, new_m)
            else:

                def listing(x: Any) -> dict[str, tuple[str, int]]:
                    d = x.directory or ""
                    return {
                        o.key[len(d) :]: (o.digest, o.size)
                        for o in queries.snapshot_files(s, user.id, x)
                    }

                result = compare_keys(listing(other), listing(snap))
    return page(
        "diff.html",
        user=user,
        csrf=user.csrf,
        nav="tasks",
        task=task,
        snap=snap,
        other=other,
        name=snapshot_name(snap.directory),
        other_name=snapshot_name(other.directory) if other else "",
        choices=choices,
        result=result,
        base=f"/tasks/{task.uuid}/snapshots/{snap.id}",
    )
