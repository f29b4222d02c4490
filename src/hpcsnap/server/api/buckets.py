"""Buckets over REST: create, list, delete; upload, list, download and delete their keys.

Uploads and downloads are streamed (no whole file in memory); an upload becomes visible only
once its content is stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from hpcsnap.blobstore import BlobError, ContentStore
from hpcsnap.server import blobrefs
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.deps import Ctx, DbSession, User
from hpcsnap.server.db import Bucket, Object
from hpcsnap.server.errors import Conflict

log = logging.getLogger(__name__)
router = APIRouter(tags=["buckets"])
CHUNK = 1 << 20


class BucketCreate(BaseModel):
    name: str


def bucket_json(bucket: Bucket, count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": bucket.name, "creationDate": bucket.created_at.isoformat() + "Z"}
    if count is not None:
        out["fileCount"] = count
    return out


def object_json(obj: Object) -> dict[str, Any]:
    return {
        "key": obj.key,
        "size": obj.size,
        "hash": obj.digest,
        "md5": obj.md5,
        "mtime": obj.mtime_ns / 1e9,
        "snapshotId": obj.snapshot_id,
    }


@router.post("/buckets", status_code=201)
def create_bucket(body: BucketCreate, user: User, session: DbSession) -> dict[str, Any]:
    """Create a bucket; creating one you already own is not an error (as S3's us-east-1)."""
    bx.check_bucket_name(body.name)
    return bucket_json(bx.ensure_bucket(session, user.user_id, body.name))


@router.get("/buckets")
def list_buckets(user: User, session: DbSession) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Bucket).where(Bucket.owner_id == user.user_id).order_by(Bucket.name)
    )
    return [bucket_json(b) for b in rows]


@router.delete("/buckets/{name}", status_code=204)
def delete_bucket(name: str, ctx: Ctx, user: User) -> Response:
    """Delete a bucket and its keys; their content is freed unless something else holds it
    (another key, a live snapshot)."""
    with ctx.db.session() as session:
        bucket = bx.get_bucket(session, user.user_id, name)
        task = bx.buckets_in_use(session, user.user_id).get(name)
        if task:
            raise Conflict(f"bucket {name!r} is used by unfinished task {task}; abort it first")
        digests = set(session.scalars(select(Object.digest).where(Object.bucket_id == bucket.id)))
        session.delete(bucket)
    try:
        blobrefs.free(ctx.db, ctx.store(user.user_id), user.user_id, digests)
    except BlobError as exc:  # the bucket is gone; what is left is for the full sweep
        log.warning("bucket %s deleted, its content not freed: %s", name, exc)
    return Response(status_code=204)


@router.get("/buckets/{name}/files")
def list_files(
    name: str,
    user: User,
    session: DbSession,
    prefix: str = "",
) -> list[dict[str, Any]]:
    bucket = bx.get_bucket(session, user.user_id, name)
    return [object_json(o) for o in bx.list_objects(session, bucket, prefix)]


def _lookup_bucket(ctx: Ctx, owner_id: int, name: str) -> int:
    with ctx.db.session() as s:
        return bx.get_bucket(s, owner_id, name).id


@router.put("/buckets/{name}/files/{key:path}")
async def put_file(name: str, key: str, request: Request, ctx: Ctx, user: User) -> dict[str, Any]:
    """Upload the raw request body as ``key`` (streamed to disk while it is hashed)."""
    bx.check_key(key)
    await run_in_threadpool(_lookup_bucket, ctx, user.user_id, name)
    tmpdir = ctx.settings.data_dir / "tmp"
    tmpdir.mkdir(exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmpdir, prefix="upload-")
    tmp = Path(tmp_name)
    try:
        xxh, md5, size = xxhash.xxh3_128(), hashlib.md5(usedforsecurity=False), 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                xxh.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                await run_in_threadpool(f.write, chunk)
        digest = xxh.hexdigest()
        store = ctx.store(user.user_id)
        await run_in_threadpool(store.put_file, tmp, digest=digest)
        return await run_in_threadpool(
            _record_upload, ctx, user.user_id, name, key, digest, size, md5.hexdigest(), tmp
        )
    finally:
        tmp.unlink(missing_ok=True)


def _record_upload(
    ctx: Ctx, owner_id: int, name: str, key: str, digest: str, size: int, md5: str, tmp: Path
) -> dict[str, Any]:
    store = ctx.store(owner_id)
    with ctx.db.session() as s:
        bucket = bx.get_bucket(s, owner_id, name)
        try:
            blobrefs.check_stored(s, store, owner_id, [digest])
        except blobrefs.MissingContent:  # freed since put_file found it stored: store it again
            store.put_file(tmp, digest=digest)
        bx.put_object(s, bucket, key, digest=digest, size=size, mtime_ns=time.time_ns(), md5=md5)
    return {"key": key, "size": size, "hash": digest, "md5": md5}


def iter_blob(store: ContentStore, digest: str) -> Iterator[bytes]:
    with store.open(digest) as f:
        while chunk := f.read(CHUNK):
            yield chunk


@router.get("/buckets/{name}/files/{key:path}")
def get_file(name: str, key: str, ctx: Ctx, user: User, session: DbSession) -> StreamingResponse:
    bucket = bx.get_bucket(session, user.user_id, name)
    obj = bx.get_object(session, bucket, key)
    return StreamingResponse(
        iter_blob(ctx.store(user.user_id), obj.digest),
        media_type="application/octet-stream",
        headers={"Content-Length": str(obj.size), "ETag": f'"{obj.md5 or obj.digest}"'},
    )


@router.delete("/buckets/{name}/files/{key:path}", status_code=204)
def delete_file(name: str, key: str, user: User, session: DbSession) -> Response:
    bucket = bx.get_bucket(session, user.user_id, name)
    session.delete(bx.get_object(session, bucket, key))
    return Response(status_code=204)
