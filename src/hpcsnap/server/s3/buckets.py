"""Service and bucket operations: ListBuckets, Create/Head/DeleteBucket, ListObjects (v1, v2),
ListObjectVersions, GetBucketVersioning/Location/Acl, DeleteObjects, ListMultipartUploads.

Buckets are unversioned: every object is its only version, with version ID ``null``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import quote

from sqlalchemy import delete, select
from starlette.responses import Response

from hpcsnap.server import bucketindex as bx
from hpcsnap.server.db import Bucket, Object
from hpcsnap.server.errors import BadRequest
from hpcsnap.server.s3 import xmlio
from hpcsnap.server.s3.body import receive_bytes
from hpcsnap.server.s3.call import (
    Call,
    bucket_id,
    empty,
    etag_of,
    find_bucket,
    owner_element,
    quoted,
    xml_response,
)
from hpcsnap.server.s3.errors import S3Error, invalid_argument, malformed_xml
from hpcsnap.server.s3.listing import MAX_KEYS, Page, list_page

MAX_DELETE = 1000
Encoder = Callable[[str], str]


async def list_buckets(call: Call) -> Response:
    def load() -> list[tuple[str, int]]:
        with call.session() as s:
            rows = s.scalars(
                select(Bucket).where(Bucket.owner_id == call.owner).order_by(Bucket.name)
            ).all()
            return [(b.name, _ns(b.created_at)) for b in rows]

    root = xmlio.root("ListAllMyBucketsResult")
    owner_element(root, call.principal)
    buckets = xmlio.add(root, "Buckets")
    for name, created_ns in await call.run(load):
        b = xmlio.add(buckets, "Bucket")
        xmlio.add(b, "Name", name)
        xmlio.add(b, "CreationDate", xmlio.iso(created_ns))
    return xml_response(root)


def _ns(naive_utc: dt.datetime) -> int:
    return int(naive_utc.replace(tzinfo=dt.UTC).timestamp() * 1e9)


async def create_bucket(call: Call) -> Response:
    """Create a bucket; creating one you already own answers 200 (as AWS's us-east-1)."""
    body = await receive_bytes(call.request, call.headers, call.principal, xmlio.MAX_BODY)
    if body.strip():
        xmlio.parse(body, "CreateBucketConfiguration")  # the location constraint is ignored
    try:
        bx.check_bucket_name(call.bucket)
    except BadRequest as exc:
        raise S3Error("InvalidBucketName", exc.message, BucketName=call.bucket) from None

    def create() -> None:
        with call.session() as s:
            bx.ensure_bucket(s, call.owner, call.bucket)

    await call.run(create)
    return empty(200, {"location": f"/{call.bucket}"})


async def head_bucket(call: Call) -> Response:
    await call.run(bucket_id, call)
    return empty(200, {"x-amz-bucket-region": "us-east-1"})


async def delete_bucket(call: Call) -> Response:
    def remove() -> None:
        with call.session() as s:
            bucket = find_bucket(s, call.owner, call.bucket)
            if bx.count_objects(s, bucket):
                raise S3Error(
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                    409,
                    BucketName=call.bucket,
                )
            task = bx.buckets_in_use(s, call.owner).get(call.bucket)
            if task:
                raise S3Error(
                    "OperationAborted",
                    f"bucket {call.bucket!r} is used by unfinished task {task}; abort it first",
                    409,
                    BucketName=call.bucket,
                )
            s.delete(bucket)
        for upload in call.uploads.of_bucket(call.owner, call.bucket):
            call.uploads.remove(upload)

    await call.run(remove)
    return empty(204)


async def get_versioning(call: Call) -> Response:
    await call.run(bucket_id, call)
    return xml_response(xmlio.root("VersioningConfiguration"))


async def get_location(call: Call) -> Response:
    await call.run(bucket_id, call)
    return xml_response(xmlio.root("LocationConstraint"))


async def get_acl(call: Call) -> Response:
    """The only ACL there is: the owner has full control."""
    await call.run(bucket_id, call)
    root = xmlio.root("AccessControlPolicy")
    owner_element(root, call.principal)
    grant = xmlio.add(xmlio.add(root, "AccessControlList"), "Grant")
    grantee = ET.SubElement(
        grant,
        "Grantee",
        {"xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance", "xsi:type": "CanonicalUser"},
    )
    xmlio.add(grantee, "ID", call.principal.owner_id)
    xmlio.add(grantee, "DisplayName", call.principal.email)
    xmlio.add(grant, "Permission", "FULL_CONTROL")
    return xml_response(root)


def _max_keys(call: Call, name: str = "max-keys") -> int:
    raw = call.params.get(name)
    if raw is None:
        return MAX_KEYS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise invalid_argument(f"Provided {name} not an integer or within integer range", name, raw)
    return min(value, MAX_KEYS)


def _encoder(call: Call) -> Encoder | None:
    kind = call.params.get("encoding-type")
    if kind is None:
        return None
    if kind.lower() != "url":
        raise invalid_argument(
            "Invalid Encoding Method specified in Request", "encoding-type", kind
        )
    return lambda value: quote(value, safe="/")


def _page(call: Call, prefix: str, delimiter: str, after: str, max_keys: int) -> Page:
    with call.session() as s:
        bucket = find_bucket(s, call.owner, call.bucket)
        return list_page(
            s, bucket.id, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )


def _object_fields(el: ET.Element, obj: Object, enc: Encoder) -> None:
    xmlio.add(el, "Key", enc(obj.key))
    xmlio.add(el, "LastModified", xmlio.iso(obj.mtime_ns))
    xmlio.add(el, "ETag", quoted(etag_of(obj)))
    xmlio.add(el, "Size", obj.size)


async def list_objects(call: Call) -> Response:
    """ListObjects (v1) or, with ``list-type=2``, ListObjectsV2."""
    v2 = call.params.get("list-type") == "2"
    enc_or_none = _encoder(call)
    enc: Encoder = enc_or_none or (lambda value: value)
    prefix = call.params.get("prefix", "")
    delimiter = call.params.get("delimiter", "")
    max_keys = _max_keys(call)
    token = call.params.get("continuation-token")
    if v2:
        after = _decode_token(token) if token is not None else call.params.get("start-after", "")
    else:
        after = call.params.get("marker", "")
    page = await call.run(_page, call, prefix, delimiter, after, max_keys)

    root = xmlio.root("ListBucketResult")
    xmlio.add(root, "Name", call.bucket)
    xmlio.add(root, "Prefix", enc(prefix))
    if v2:
        if token is not None:
            xmlio.add(root, "ContinuationToken", token)
        if "start-after" in call.params:
            xmlio.add(root, "StartAfter", enc(call.params["start-after"]))
        xmlio.add(root, "KeyCount", len(page.objects) + len(page.prefixes))
    else:
        xmlio.add(root, "Marker", enc(after))
    xmlio.add(root, "MaxKeys", max_keys)
    if delimiter:
        xmlio.add(root, "Delimiter", enc(delimiter))
    xmlio.add(root, "IsTruncated", page.truncated)
    if page.truncated and page.next_marker is not None:
        if v2:
            xmlio.add(root, "NextContinuationToken", _encode_token(page.next_marker))
        else:
            xmlio.add(root, "NextMarker", enc(page.next_marker))
    if enc_or_none is not None:
        xmlio.add(root, "EncodingType", "url")
    with_owner = not v2 or call.params.get("fetch-owner") == "true"
    for obj in page.objects:
        el = xmlio.add(root, "Contents")
        _object_fields(el, obj, enc)
        if with_owner:
            owner_element(el, call.principal)
        xmlio.add(el, "StorageClass", "STANDARD")
    for common in page.prefixes:
        xmlio.add(xmlio.add(root, "CommonPrefixes"), "Prefix", enc(common))
    return xml_response(root)


def _encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError):
        raise invalid_argument(
            "The continuation token provided is incorrect", "continuation-token", token
        ) from None


async def list_object_versions(call: Call) -> Response:
    """ListObjectVersions of an unversioned bucket: one version (``null``) per key."""
    enc_or_none = _encoder(call)
    enc: Encoder = enc_or_none or (lambda value: value)
    prefix = call.params.get("prefix", "")
    delimiter = call.params.get("delimiter", "")
    key_marker = call.params.get("key-marker", "")
    max_keys = _max_keys(call)
    page = await call.run(_page, call, prefix, delimiter, key_marker, max_keys)

    root = xmlio.root("ListVersionsResult")
    xmlio.add_all(
        root,
        [
            ("Name", call.bucket),
            ("Prefix", enc(prefix)),
            ("KeyMarker", enc(key_marker)),
            ("VersionIdMarker", call.params.get("version-id-marker", "")),
            ("MaxKeys", max_keys),
        ],
    )
    if delimiter:
        xmlio.add(root, "Delimiter", enc(delimiter))
    xmlio.add(root, "IsTruncated", page.truncated)
    if page.truncated and page.next_marker is not None:
        xmlio.add(root, "NextKeyMarker", enc(page.next_marker))
        xmlio.add(root, "NextVersionIdMarker", "null")
    if enc_or_none is not None:
        xmlio.add(root, "EncodingType", "url")
    for obj in page.objects:
        el = xmlio.add(root, "Version")
        xmlio.add(el, "Key", enc(obj.key))
        xmlio.add(el, "VersionId", "null")
        xmlio.add(el, "IsLatest", True)
        xmlio.add(el, "LastModified", xmlio.iso(obj.mtime_ns))
        xmlio.add(el, "ETag", quoted(etag_of(obj)))
        xmlio.add(el, "Size", obj.size)
        owner_element(el, call.principal)
        xmlio.add(el, "StorageClass", "STANDARD")
    for common in page.prefixes:
        xmlio.add(xmlio.add(root, "CommonPrefixes"), "Prefix", enc(common))
    return xml_response(root)


async def delete_objects(call: Call) -> Response:
    """DeleteObjects: up to 1000 keys; version ``null`` (or none) is the object itself."""
    body = await receive_bytes(call.request, call.headers, call.principal, xmlio.MAX_BODY)
    doc = xmlio.parse(body, "Delete")
    quiet = (xmlio.child_text(doc, "Quiet") or "").strip().lower() == "true"
    items = []
    for el in xmlio.children(doc, "Object"):
        key = xmlio.child_text(el, "Key")
        if not key:
            raise malformed_xml("an <Object> has no <Key>")
        items.append((key, xmlio.child_text(el, "VersionId")))
    if len(items) > MAX_DELETE:
        raise malformed_xml(f"at most {MAX_DELETE} objects can be deleted per request")

    def remove() -> list[tuple[str, str | None, str | None]]:
        outcome: list[tuple[str, str | None, str | None]] = []
        with call.session() as s:
            bucket = find_bucket(s, call.owner, call.bucket)
            doomed = []
            for key, version in items:
                if version not in (None, "", "null"):
                    outcome.append((key, version, "NoSuchVersion"))
                else:
                    doomed.append(key)
                    outcome.append((key, version, None))
            for i in range(0, len(doomed), 500):
                s.execute(
                    delete(Object).where(
                        Object.bucket_id == bucket.id, Object.key.in_(doomed[i : i + 500])
                    )
                )
        return outcome

    root = xmlio.root("DeleteResult")
    for key, version, error in await call.run(remove):
        if error is None and quiet:
            continue
        el = xmlio.add(root, "Error" if error else "Deleted")
        xmlio.add(el, "Key", key)
        if version is not None:
            xmlio.add(el, "VersionId", version)
        if error:
            xmlio.add(el, "Code", error)
            xmlio.add(el, "Message", "The specified version does not exist.")
    return xml_response(root)


async def list_uploads(call: Call) -> Response:
    """ListMultipartUploads (all of them, no paging: uploads in progress are few)."""
    await call.run(bucket_id, call)
    prefix = call.params.get("prefix", "")
    uploads = [
        u
        for u in await call.run(call.uploads.of_bucket, call.owner, call.bucket)
        if u.key.startswith(prefix)
    ]
    root = xmlio.root("ListMultipartUploadsResult")
    xmlio.add_all(
        root,
        [
            ("Bucket", call.bucket),
            ("KeyMarker", ""),
            ("UploadIdMarker", ""),
            ("Prefix", prefix),
            ("MaxUploads", MAX_KEYS),
            ("IsTruncated", False),
        ],
    )
    for upload in uploads:
        el = xmlio.add(root, "Upload")
        xmlio.add(el, "Key", upload.key)
        xmlio.add(el, "UploadId", upload.upload_id)
        owner_element(el, call.principal, "Initiator")
        owner_element(el, call.principal)
        xmlio.add(el, "StorageClass", "STANDARD")
        xmlio.add(el, "Initiated", xmlio.iso(upload.initiated_ns))
    return xml_response(root)
