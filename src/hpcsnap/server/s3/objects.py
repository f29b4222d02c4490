"""Object operations: Put/Get/Head/Copy/DeleteObject and multipart uploads (Create, UploadPart,
UploadPartCopy, Complete, Abort, ListParts).

Object bodies are streamed both ways (never held whole in memory). An upload is stored in the
user's content store under its hash and becomes visible in the bucket index only once stored.
Copies are index rows pointing at the same content: nothing is copied.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO
from urllib.parse import unquote

from sqlalchemy import select
from starlette.responses import Response, StreamingResponse

from hpcsnap.server import blobrefs
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.db import Object
from hpcsnap.server.s3 import buckets, xmlio
from hpcsnap.server.s3.body import discard, receive_bytes, receive_file
from hpcsnap.server.s3.call import (
    Call,
    bucket_id,
    check_key,
    empty,
    etag_of,
    find_bucket,
    find_object,
    metadata_from,
    object_headers,
    owner_element,
    quoted,
    xml_response,
)
from hpcsnap.server.s3.errors import S3Error, invalid_argument, malformed_xml, not_implemented
from hpcsnap.server.s3.multipart import MAX_PARTS, Upload, check_part_number, concat

MAX_PUT = 5 << 30
"""Largest single PutObject or UploadPart (S3's limit, 5 GiB)."""
CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def _object(call: Call, bucket: str, key: str) -> Object:
    with call.session() as s:
        return find_object(s, find_bucket(s, call.owner, bucket), key)


def _record(
    call: Call,
    key: str,
    *,
    digest: str,
    size: int,
    md5: str,
    etag: str | None,
    meta: dict[str, str],
    store_again: Callable[[], object],
) -> int:
    """Add the key for content just stored; ``store_again`` stores it anew if garbage
    collection freed it since (a dedup hit on content whose last reference went meanwhile)."""
    now = time.time_ns()
    with call.session() as s:
        bucket = find_bucket(s, call.owner, call.bucket)
        blobrefs.ensure_stored(s, call.store(), call.owner, [digest], lambda _: store_again())
        bx.put_object(
            s, bucket, key, digest=digest, size=size, mtime_ns=now, md5=md5, etag=etag, meta=meta
        )
    return now


async def put_object(call: Call) -> Response:
    check_key(call.key)
    meta = metadata_from(call.headers)
    await call.run(bucket_id, call)  # NoSuchBucket before reading a large body
    got = await receive_file(call.request, call.headers, call.principal, call.tmpdir, MAX_PUT)

    def store() -> object:
        return call.store().put_file(got.path, digest=got.digest)

    try:
        await call.run(store)
        await call.run(
            lambda: _record(
                call,
                call.key,
                digest=got.digest,
                size=got.size,
                md5=got.md5,
                etag=None,
                meta=meta,
                store_again=store,
            )
        )
    finally:
        discard(got.path)
    return empty(200, {"etag": quoted(got.md5)})


def _etag_matches(header: str, etag: str) -> bool:
    for item in header.split(","):
        item = item.strip().removeprefix("W/").strip('"')
        if item == "*" or item == etag:
            return True
    return False


def _http_time(header: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _preconditions(headers: dict[str, str], prefix: str, obj: Object) -> int | None:
    """304 or 412 when a conditional header says so (``prefix``: "" or "x-amz-copy-source-")."""
    etag, modified = etag_of(obj), obj.mtime_ns // 1_000_000_000
    if_match = headers.get(prefix + "if-match")
    if if_match is not None and not _etag_matches(if_match, etag):
        return 412
    since = _http_time(headers.get(prefix + "if-unmodified-since", ""))
    if if_match is None and since is not None and modified > since:
        return 412
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None and _etag_matches(if_none, etag):
        return 304
    since = _http_time(headers.get(prefix + "if-modified-since", ""))
    if if_none is None and since is not None and modified <= since:
        return 304
    return None


def _precondition_failed() -> S3Error:
    return S3Error(
        "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a ``Range: bytes=...`` header; None means the whole object
    (no header, a malformed one or several ranges, which S3 ignores)."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if not m or not (m[1] or m[2]):
        return None
    if m[1]:
        first = int(m[1])
        last = min(int(m[2]), size - 1) if m[2] else size - 1
        if m[2] and int(m[2]) < first:
            return None
    else:
        first, last = max(0, size - int(m[2])), size - 1
        if int(m[2]) == 0:
            first = size
    if first >= size or last < first:
        err = S3Error(
            "InvalidRange",
            "The requested range is not satisfiable",
            416,
            RangeRequested=header,
            ActualObjectSize=str(size),
        )
        err.headers["content-range"] = f"bytes */{size}"
        raise err
    return first, last


def _read_range(f: BinaryIO, first: int, length: int) -> Iterator[bytes]:
    try:
        if first:
            try:
                f.seek(first)
            except (OSError, ValueError):  # a stream that cannot seek: skip what comes before
                skip = first
                while skip > 0 and (chunk := f.read(min(CHUNK, skip))):
                    skip -= len(chunk)
        remaining = length
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"content ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


async def get_object(call: Call, *, head: bool = False) -> Response:
    """GetObject (or HeadObject): ranges, conditional headers, ``response-*`` overrides."""
    part = call.params.get("partNumber")
    obj = await call.run(_object, call, call.bucket, call.key)
    if part is not None and (part != "1" or "-" in etag_of(obj)):
        raise not_implemented("Reading one part of an object (partNumber)")
    headers = object_headers(obj)
    status = _preconditions(call.headers, "", obj)
    if status == 412:
        raise _precondition_failed()
    if status == 304:
        return empty(304, {k: headers[k] for k in ("etag", "last-modified")})
    for param, header in _OVERRIDES.items():
        if param in call.params:
            headers[header] = call.params[param]
    span = _byte_range(call.headers.get("range"), obj.size)
    first, last = span if span else (0, obj.size - 1)
    length = last - first + 1
    headers["content-length"] = str(length)
    status = 200
    if span:
        status = 206
        headers["content-range"] = f"bytes {first}-{last}/{obj.size}"
    if head or length == 0:
        return empty(status, headers)
    blob = await call.run(call.store().open, obj.digest)
    return StreamingResponse(_read_range(blob, first, length), status, headers=headers)


async def delete_object(call: Call) -> Response:
    """DeleteObject: 204 whether or not the key existed (as S3)."""
    version = call.params.get("versionId")
    if version not in (None, "", "null"):
        raise invalid_argument("Invalid version id specified", "versionId", version or "")

    def remove() -> None:
        with call.session() as s:
            bucket = find_bucket(s, call.owner, call.bucket)
            obj = s.scalar(
                select(Object).where(Object.bucket_id == bucket.id, Object.key == call.key)
            )
            if obj is not None:
                s.delete(obj)

    await call.run(remove)
    return empty(204)


def _copy_source(call: Call) -> tuple[str, str]:
    raw = call.headers["x-amz-copy-source"]
    source, _, query = raw.partition("?")
    source = unquote(source).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            "x-amz-copy-source",
            raw,
        )
    version = query.removeprefix("versionId=") if query.startswith("versionId=") else None
    if version not in (None, "null"):
        raise S3Error("NoSuchVersion", "The specified version does not exist.", 404)
    return bucket, key


async def copy_object(call: Call) -> Response:
    """CopyObject (within the caller's buckets): a new key for the same content."""
    check_key(call.key)
    src_bucket, src_key = _copy_source(call)
    directive = call.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", directive)
    new_meta = metadata_from(call.headers) if directive == "REPLACE" else None

    def copy() -> tuple[str, int]:
        with call.session() as s:
            src = find_object(s, find_bucket(s, call.owner, src_bucket), src_key)
            if _preconditions(call.headers, "x-amz-copy-source-", src):
                raise _precondition_failed()
            try:  # the source row, if still there, is a reference in this transaction
                blobrefs.check_stored(s, call.store(), call.owner, [src.digest])
            except blobrefs.MissingContent:
                raise S3Error(
                    "NoSuchKey",
                    "The copy source was deleted (and its content freed) meanwhile.",
                    404,
                ) from None
            target = find_bucket(s, call.owner, call.bucket)
            meta = new_meta if new_meta is not None else dict(src.meta or {})
            now = time.time_ns()
            digest, size, md5, etag = src.digest, src.size, src.md5, src.etag
            obj = bx.put_object(
                s,
                target,
                call.key,
                digest=digest,
                size=size,
                mtime_ns=now,
                md5=md5,
                etag=etag,
                meta=meta,
            )
            return etag_of(obj), now

    etag, now = await call.run(copy)
    root = xmlio.root("CopyObjectResult")
    xmlio.add(root, "LastModified", xmlio.iso(now))
    xmlio.add(root, "ETag", quoted(etag))
    return xml_response(root)


async def get_object_acl(call: Call) -> Response:
    await call.run(_object, call, call.bucket, call.key)
    return await buckets.get_acl(call)


# -- multipart uploads -------------------------------------------------------------------


def _upload(call: Call) -> Upload:
    return call.uploads.get(call.params["uploadId"], call.owner, call.bucket, call.key)


async def create_upload(call: Call) -> Response:
    check_key(call.key)
    meta = metadata_from(call.headers)
    await call.run(bucket_id, call)
    upload = await call.run(call.uploads.create, call.owner, call.bucket, call.key, meta)
    root = xmlio.root("InitiateMultipartUploadResult")
    xmlio.add_all(
        root, [("Bucket", call.bucket), ("Key", call.key), ("UploadId", upload.upload_id)]
    )
    return xml_response(root)


async def upload_part(call: Call) -> Response:
    number = check_part_number(call.params.get("partNumber"))
    upload = await call.run(_upload, call)
    if "x-amz-copy-source" in call.headers:
        return await _upload_part_copy(call, upload, number)
    got = await receive_file(call.request, call.headers, call.principal, upload.directory, MAX_PUT)
    try:
        await call.run(call.uploads.add_part, upload, number, got.path, got.md5, got.size)
    finally:
        discard(got.path)
    return empty(200, {"etag": quoted(got.md5)})


async def _upload_part_copy(call: Call, upload: Upload, number: int) -> Response:
    src_bucket, src_key = _copy_source(call)
    src = await call.run(_object, call, src_bucket, src_key)
    if _preconditions(call.headers, "x-amz-copy-source-", src):
        raise _precondition_failed()
    raw_range = call.headers.get("x-amz-copy-source-range")
    span = _byte_range(raw_range, src.size) if raw_range else None
    if raw_range and span is None:
        raise invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last",
            "x-amz-copy-source-range",
            raw_range,
        )
    first, last = span if span else (0, src.size - 1)

    def copy_range() -> str:
        md5 = hashlib.md5(usedforsecurity=False)
        target = upload.directory / f"copy-{number:05d}-{time.time_ns()}"
        try:
            with target.open("wb") as out:
                for chunk in _read_range(call.store().open(src.digest), first, last - first + 1):
                    md5.update(chunk)
                    out.write(chunk)
            call.uploads.add_part(upload, number, target, md5.hexdigest(), last - first + 1)
        finally:
            discard(target)
        return md5.hexdigest()

    md5 = await call.run(copy_range)
    root = xmlio.root("CopyPartResult")
    xmlio.add(root, "LastModified", xmlio.iso(time.time_ns()))
    xmlio.add(root, "ETag", quoted(md5))
    return xml_response(root)


def _wanted_parts(body: bytes) -> list[tuple[int, str]]:
    doc = xmlio.parse(body, "CompleteMultipartUpload")
    wanted = []
    for el in xmlio.children(doc, "Part"):
        number, etag = xmlio.child_text(el, "PartNumber"), xmlio.child_text(el, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise malformed_xml("each <Part> needs a <PartNumber> and an <ETag>")
        wanted.append((int(number), etag))
    if len(wanted) > MAX_PARTS:
        raise malformed_xml(f"at most {MAX_PARTS} parts")
    return wanted


async def complete_upload(call: Call) -> Response:
    """CompleteMultipartUpload: the parts, in order, become one object with an AWS-style
    ETag (MD5 of the parts' MD5s, ``-<number of parts>``)."""
    upload = await call.run(_upload, call)
    body = await receive_bytes(call.request, call.headers, call.principal, xmlio.MAX_BODY)
    wanted = _wanted_parts(body)

    def complete() -> str:
        made = call.uploads.assemble(upload, wanted)

        def store() -> object:
            return call.store().put_file(
                upload.directory, digest=made.digest, opener=lambda _: concat(made.paths)
            )

        store()
        _record(
            call,
            call.key,
            digest=made.digest,
            size=made.size,
            md5=made.md5,
            etag=made.etag,
            meta=upload.meta,
            store_again=store,
        )
        call.uploads.remove(upload)
        return made.etag

    etag = await call.run(complete)
    root = xmlio.root("CompleteMultipartUploadResult")
    xmlio.add_all(
        root,
        [
            ("Location", f"/{call.bucket}/{call.key}"),
            ("Bucket", call.bucket),
            ("Key", call.key),
            ("ETag", quoted(etag)),
        ],
    )
    return xml_response(root)


async def abort_upload(call: Call) -> Response:
    upload = await call.run(_upload, call)
    await call.run(call.uploads.remove, upload)
    return empty(204)


async def list_parts(call: Call) -> Response:
    upload = await call.run(_upload, call)
    try:
        marker = int(call.params.get("part-number-marker") or 0)
        max_parts = min(int(call.params.get("max-parts") or 1000), 1000)
    except ValueError:
        raise invalid_argument("part-number-marker and max-parts must be integers") from None
    parts = [p for p in await call.run(call.uploads.parts, upload) if p.number > marker]
    shown = parts[:max_parts]
    root = xmlio.root("ListPartsResult")
    xmlio.add_all(
        root,
        [
            ("Bucket", call.bucket),
            ("Key", call.key),
            ("UploadId", upload.upload_id),
            ("PartNumberMarker", marker),
            ("NextPartNumberMarker", shown[-1].number if shown else marker),
            ("MaxParts", max_parts),
            ("IsTruncated", len(parts) > max_parts),
            ("StorageClass", "STANDARD"),
        ],
    )
    owner_element(root, call.principal, "Initiator")
    owner_element(root, call.principal)
    for p in shown:
        el = xmlio.add(root, "Part")
        xmlio.add(el, "PartNumber", p.number)
        xmlio.add(el, "LastModified", xmlio.iso(p.mtime_ns))
        xmlio.add(el, "ETag", quoted(p.md5))
        xmlio.add(el, "Size", p.size)
    return xml_response(root)
