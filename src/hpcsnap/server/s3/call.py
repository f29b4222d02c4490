"""What every S3 operation gets (:class:`Call`) and the helpers they share."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hpcsnap.blobstore import ContentStore
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.context import ServerContext
from hpcsnap.server.db import Bucket, Object
from hpcsnap.server.errors import BadRequest
from hpcsnap.server.s3 import xmlio
from hpcsnap.server.s3.access import Principal
from hpcsnap.server.s3.errors import S3Error, no_such_bucket, no_such_key
from hpcsnap.server.s3.multipart import Uploads

T = TypeVar("T")

#: Stored request headers that GetObject and HeadObject send back.
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)
MAX_USER_METADATA = 2048
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


@dataclass
class Call:
    """One authenticated S3 request, split into bucket, key and parameters."""

    ctx: ServerContext
    uploads: Uploads
    request: Request
    principal: Principal
    method: str
    bucket: str
    key: str
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def owner(self) -> int:
        return self.principal.user_id

    @property
    def tmpdir(self) -> Path:
        return self.ctx.settings.data_dir / "tmp"

    def store(self) -> ContentStore:
        return self.ctx.store(self.owner)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread (database and blob store calls block)."""
        return await run_in_threadpool(fn, *args)

    def session(self) -> AbstractContextManager[Session]:
        """A database session, committed when the block ends without an error."""
        return self.ctx.db.session()


def bucket_id(call: Call) -> int:
    """The id of the call's bucket (``NoSuchBucket`` if the caller has none of that name)."""
    with call.session() as s:
        return find_bucket(s, call.owner, call.bucket).id


def find_bucket(session: Session, owner: int, name: str) -> Bucket:
    bucket = session.scalar(select(Bucket).where(Bucket.owner_id == owner, Bucket.name == name))
    if bucket is None:
        raise no_such_bucket(name)
    return bucket


def find_object(session: Session, bucket: Bucket, key: str) -> Object:
    obj = session.scalar(select(Object).where(Object.bucket_id == bucket.id, Object.key == key))
    if obj is None:
        raise no_such_key(key)
    return obj


def check_key(key: str) -> str:
    """A key S3 clients may write: hpcsnap's key rules (tasks stage keys as paths in /job)."""
    try:
        return bx.check_key(key)
    except BadRequest as exc:
        if "longer than" in exc.message:
            raise S3Error("KeyTooLongError", "Your key is too long.") from None
        raise S3Error("InvalidArgument", f"Invalid key: {exc.message}") from None


def etag_of(obj: Object) -> str:
    """The ETag of an object, without quotes.

    The stored ETag (multipart uploads), else the MD5 (single uploads), else, for content
    written by tasks and snapshots whose MD5 was never computed, ``<content hash>-1``: stable,
    different whenever the content differs, and shaped like a multipart ETag so that no
    client takes it for an MD5 to check a download against.
    """
    return obj.etag or obj.md5 or f"{obj.digest}-1"


def quoted(etag: str) -> str:
    return f'"{etag}"'


def metadata_from(headers: Mapping[str, str]) -> dict[str, str]:
    """What an upload's headers ask to store with the object."""
    meta = {h: headers[h] for h in STORED_HEADERS if headers.get(h)}
    encoding = [
        e.strip() for e in meta.get("content-encoding", "").split(",") if e.strip() != "aws-chunked"
    ]
    if any(encoding):
        meta["content-encoding"] = ",".join(e for e in encoding if e)
    else:
        meta.pop("content-encoding", None)
    user = {h: v for h, v in headers.items() if h.startswith("x-amz-meta-")}
    if sum(len(h) - len("x-amz-meta-") + len(v) for h, v in user.items()) > MAX_USER_METADATA:
        raise S3Error(
            "MetadataTooLarge",
            f"Your metadata headers exceed the maximum allowed metadata size "
            f"({MAX_USER_METADATA} bytes)",
        )
    return {**meta, **user}


def object_headers(obj: Object) -> dict[str, str]:
    """The headers describing ``obj`` in GetObject and HeadObject answers."""
    meta = obj.meta or {}
    headers = {
        "content-type": meta.get("content-type") or DEFAULT_CONTENT_TYPE,
        "etag": quoted(etag_of(obj)),
        "last-modified": xmlio.http_date(obj.mtime_ns),
        "accept-ranges": "bytes",
    }
    headers.update({k: v for k, v in meta.items() if k != "content-type"})
    return headers


def xml_response(
    el: ET.Element, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(xmlio.dump(el), status, headers=headers, media_type="application/xml")


def empty(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", status, headers=headers)


def owner_element(parent: ET.Element, principal: Principal, name: str = "Owner") -> None:
    owner = xmlio.add(parent, name)
    xmlio.add(owner, "ID", principal.owner_id)
    xmlio.add(owner, "DisplayName", principal.email)
