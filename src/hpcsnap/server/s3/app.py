"""The S3 ASGI application (authentication, routing, S3 errors) and the dispatcher that sends
signed requests to it.

Path-style addressing only (``/<bucket>/<key>``): every S3 SDK uses it for a custom endpoint.
Bucket names have at least 3 characters, so no bucket is ever confused with ``/v1``; but
routing does not depend on that, only on the presence of an AWS signature.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpcsnap.server.context import ServerContext
from hpcsnap.server.s3 import access, buckets, objects, sigv4
from hpcsnap.server.s3.call import Call
from hpcsnap.server.s3.errors import S3Error, not_implemented
from hpcsnap.server.s3.multipart import Uploads
from hpcsnap.server.s3.secrets import sealer_for

log = logging.getLogger(__name__)

Handler = Callable[[Call], Awaitable[Response]]
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))

#: Sub-resources of S3's API that hpcsnap does not offer (answered 501 NotImplemented).
UNSUPPORTED = (
    "accelerate",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
)


def is_signed(scope: Scope) -> bool:
    """Whether a request carries an AWS signature (header or presigned query)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bool(value.startswith((b"AWS4-HMAC-SHA256", b"AWS ")))
    query = scope.get("query_string", b"")
    return b"X-Amz-Algorithm=" in query or b"AWSAccessKeyId=" in query


class S3Dispatch:
    """ASGI middleware: signed requests go to the S3 app, all others to the wrapped app."""

    def __init__(self, app: ASGIApp, s3: ASGIApp) -> None:
        self.app = app
        self.s3 = s3

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_signed(scope):
            await self.s3(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case header names; repeated headers joined with ``,`` (as SigV4 wants them)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class S3App:
    """hpcsnap's buckets as an S3 service (see :mod:`hpcsnap.server.s3`)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.uploads = Uploads(ctx.settings.data_dir / "s3-uploads")
        self.sealer = sealer_for(ctx.settings.data_dir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_read = False

        async def tracked() -> Message:
            nonlocal body_read
            message = await receive()
            body_read |= message["type"] == "http.disconnect" or not message.get("more_body")
            return message

        request = Request(scope, tracked)
        request_id = secrets.token_hex(8).upper()
        try:
            response = await self._handle(request, scope)
        except S3Error as exc:
            response = self._error(exc, scope, request_id)
        except ClientDisconnect:
            return
        except Exception:
            log.exception("S3 %s %s failed", scope["method"], scope["path"])
            error = S3Error("InternalError", "We encountered an internal error. Try again.", 500)
            response = self._error(error, scope, request_id)
        response.headers["x-amz-request-id"] = request_id
        if not body_read and _has_body(scope):
            # Answered before the body was read (an error, or a client waiting for
            # "100 Continue"): the rest of the connection cannot be trusted, so close it.
            response.headers["connection"] = "close"
        await response(scope, tracked, send)

    @staticmethod
    def _error(exc: S3Error, scope: Scope, request_id: str) -> Response:
        if scope["method"] == "HEAD":
            return Response(b"", exc.status, headers=exc.headers)
        body = exc.to_xml(scope["path"], request_id)
        return Response(body, exc.status, headers=exc.headers, media_type="application/xml")

    async def _handle(self, request: Request, scope: Scope) -> Response:
        method = scope["method"]
        # bytes outside printable ASCII (a client that did not percent-encode) as %XX
        raw_path = quote(scope.get("raw_path") or scope["path"].encode(), safe=_PRINTABLE)
        headers = _headers(scope)
        query = sigv4.split_query(scope.get("query_string", b"").decode("latin-1"))
        principal = await run_in_threadpool(
            access.authenticate, self.ctx.db, self.sealer, method, raw_path, query, headers
        )
        try:
            path = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", "Couldn't parse the specified URI (not UTF-8).") from None
        bucket, _, key = path.removeprefix("/").partition("/")
        call = Call(
            ctx=self.ctx,
            uploads=self.uploads,
            request=request,
            principal=principal,
            method=method,
            bucket=bucket,
            key=key,
            params=dict(query),
            headers=headers,
        )
        return await route(call)(call)


def _method_not_allowed() -> S3Error:
    return S3Error(
        "MethodNotAllowed", "The specified method is not allowed against this resource.", 405
    )


def route(call: Call) -> Handler:
    """The operation a request asks for (by method, bucket/key and sub-resources)."""
    method, params = call.method, call.params
    if not call.bucket:
        if method == "GET":
            return buckets.list_buckets
        raise _method_not_allowed()
    unsupported = next((p for p in UNSUPPORTED if p in params), None)
    if unsupported is not None:
        raise not_implemented(f"The {unsupported!r} sub-resource")
    if not call.key:
        return _bucket_route(method, params)
    if method == "PUT":
        if "acl" in params:
            raise not_implemented("Setting ACLs")
        if "uploadId" in params:
            return objects.upload_part
        if "x-amz-copy-source" in call.headers:
            return objects.copy_object
        return objects.put_object
    if method == "GET" and "uploadId" in params:
        return objects.list_parts
    if method == "GET" and "acl" in params:
        return objects.get_object_acl
    if method in ("GET", "HEAD"):
        return partial(objects.get_object, head=method == "HEAD")
    if method == "DELETE":
        return objects.abort_upload if "uploadId" in params else objects.delete_object
    if method == "POST" and "uploads" in params:
        return objects.create_upload
    if method == "POST" and "uploadId" in params:
        return objects.complete_upload
    raise _method_not_allowed()


def _bucket_route(method: str, params: dict[str, str]) -> Handler:
    if method == "PUT":
        if "versioning" in params:
            raise not_implemented("Versioning (hpcsnap buckets are unversioned)")
        if "acl" in params:
            raise not_implemented("Setting ACLs")
        return buckets.create_bucket
    if method == "HEAD":
        return buckets.head_bucket
    if method == "DELETE":
        return buckets.delete_bucket
    if method == "POST" and "delete" in params:
        return buckets.delete_objects
    if method == "GET":
        for name, handler in (
            ("versioning", buckets.get_versioning),
            ("versions", buckets.list_object_versions),
            ("uploads", buckets.list_uploads),
            ("location", buckets.get_location),
            ("acl", buckets.get_acl),
        ):
            if name in params:
                return handler
        return buckets.list_objects
    raise _method_not_allowed()
