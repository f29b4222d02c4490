"""The S3 backend: objects in one bucket of an S3-compatible store, under an optional prefix.

- ``put`` streams: an object smaller than one part is one ``PutObject``; a larger one is a
  multipart upload whose parts are read one after the other and sent ``concurrency`` at a time,
  so at most ``concurrency + 2`` parts are in memory, never the whole file. The source is read
  to its end (its end-of-file check runs) before anything is committed; if reading it or any
  part fails, the multipart upload is aborted and nothing is stored.
- ``open`` streams the object; a read that breaks off is resumed where it stopped (a ranged
  ``GetObject`` pinned to the same ETag), a few times, with backoff.
- Each HTTP request is retried by botocore (``standard`` mode: connection errors, throttling,
  5xx); errors that may pass later are raised as :class:`TransientBlobError`, which
  :class:`~hpcsnap.blobstore.retry.RetryingBackend` retries at the operation level.
- ``flush`` has nothing to do: S3 acknowledges an object once it is durable.

Credentials: given explicitly (``access_key``/``secret_key``), they are part of
:meth:`S3Backend.describe`, so that the agent a server starts can open the same bucket; the
server hands that description only to a task's agent, over the agent API. Without them, boto3's
usual chain applies on each machine (``AWS_*`` variables, ``~/.aws``, instance roles).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from hpcsnap.blobstore.base import (
    BlobError,
    BlobNotFound,
    Listed,
    TransientBlobError,
    check_key,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Default part size of multipart uploads (and the size above which they are used).
PART_SIZE = 8 * MiB
#: S3 refuses more parts than this in one upload.
MAX_PARTS = 10_000
#: Parts grow by ``part_size`` every this many parts, so that an upload of unknown length
#: never runs out of part numbers (8 MiB parts: about 440 GB).
PART_GROWTH = 1000

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
    }
)
_HINTS = {
    "AccessDenied": "check the S3 credentials and the bucket policy",
    "InvalidAccessKeyId": "check HPCSNAP_S3_ACCESS_KEY (or AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "check HPCSNAP_S3_SECRET_KEY (or AWS_SECRET_ACCESS_KEY)",
    "NoSuchBucket": "create the bucket, or let the server create it at start-up",
    # HEAD answers carry no error code
    "403": "check the S3 credentials (HPCSNAP_S3_ACCESS_KEY and HPCSNAP_S3_SECRET_KEY, or "
    "AWS_*) and the bucket policy",
}
#: Errors of a broken connection or a truncated body.
_NETWORK = (BotoConnectionError, HTTPClientError, IncompleteReadError, OSError)

T = TypeVar("T")


def _status(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


def _not_found(exc: ClientError) -> bool:
    code, status = _status(exc)
    return status == 404 and code != "NoSuchBucket"


def as_blob_error(exc: Exception, what: str) -> BlobError:
    """The blob store error for a boto3/botocore failure of ``what``."""
    if isinstance(exc, ClientError):
        code, status = _status(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        text = f"S3 {what}: {code or status}: {message}"
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return TransientBlobError(text)
        hint = _HINTS.get(code) or _HINTS.get(str(status))
        return BlobError(f"{text} ({hint})" if hint else text)
    if isinstance(exc, _NETWORK):
        return TransientBlobError(f"S3 {what}: {exc}")
    return BlobError(f"S3 {what}: {type(exc).__name__}: {exc}")


def _read_full(src: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes of ``src``: fewer only at its end (after an empty read). A file
    gives them in one read, which is returned as is (no copy)."""
    parts: list[bytes] = []
    total = 0
    while total < size:
        data = src.read(size - total)
        if not data:
            break
        parts.append(data)
        total += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Reader(io.RawIOBase):
    """An object's body; a read that breaks off resumes at the same offset, same ETag."""

    def __init__(self, backend: S3Backend, key: str, resp: Mapping[str, Any]) -> None:
        super().__init__()
        self._backend = backend
        self._key = key
        self._body = resp["Body"]
        self._etag = resp.get("ETag")
        self._size = int(resp.get("ContentLength", 0))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        for attempt in range(self._backend.max_attempts):
            try:
                data = self._body.read(min(len(view), self._size - self._pos))
                if data:
                    view[: len(data)] = data
                    self._pos += len(data)
                    return len(data)
                problem: Exception = IncompleteReadError(
                    actual_bytes=self._pos, expected_bytes=self._size
                )
            except _NETWORK as exc:
                problem = exc
            if attempt + 1 == self._backend.max_attempts:
                raise as_blob_error(problem, f"reading {self._key}")
            log.warning(
                "S3 read of %s broke off at %d (%s); resuming", self._key, self._pos, problem
            )
            time.sleep(_backoff(attempt))
            with contextlib.suppress(Exception):
                self._body.close()
            extra = {"IfMatch": self._etag} if self._etag else {}
            try:
                resp = self._backend.client.get_object(
                    Bucket=self._backend.bucket,
                    Key=self._key,
                    Range=f"bytes={self._pos}-",
                    **extra,
                )
                self._body = resp["Body"]
            except ClientError as exc:
                raise as_blob_error(exc, f"resuming {self._key}") from exc
            except _NETWORK:
                continue
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


def _backoff(attempt: int, base: float = 0.2, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311


class S3Backend:
    """Objects under ``prefix`` in ``bucket`` (see the module docstring)."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        part_size: int = PART_SIZE,
        concurrency: int = 4,
        max_attempts: int = 5,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(
                f"invalid S3 bucket name {bucket!r}: 3-63 lowercase letters, digits, '.', '-'"
            )
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both the S3 access key and the secret key, or neither")
        if addressing_style not in (None, "path", "virtual", "auto"):
            raise ValueError(f"S3 addressing style {addressing_style!r}: path, virtual or auto")
        if part_size < 5 * MiB:
            raise ValueError("the S3 part size must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint = endpoint or None
        self.region = region or None
        self.addressing_style = addressing_style or ("path" if endpoint else None)
        self._credentials = (access_key, secret_key, session_token)
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.max_attempts = max(1, max_attempts)
        config = Config(
            region_name=self.region or "us-east-1",
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            s3={"addressing_style": self.addressing_style or "auto"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=self.concurrency + 8,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            config=config,
        )

    def __repr__(self) -> str:  # never shows the credentials
        return f"S3Backend(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @classmethod
    def from_description(cls, desc: Mapping[str, str]) -> S3Backend:
        if not desc.get("bucket"):
            raise ValueError("an 's3' blob store description needs a 'bucket'")
        return cls(
            bucket=desc["bucket"],
            prefix=desc.get("prefix", ""),
            endpoint=desc.get("endpoint"),
            region=desc.get("region"),
            access_key=desc.get("access_key"),
            secret_key=desc.get("secret_key"),
            session_token=desc.get("session_token"),
            addressing_style=desc.get("addressing_style"),
        )

    def describe(self) -> dict[str, str]:
        desc = {"kind": "s3", "bucket": self.bucket, "prefix": self.prefix}
        optional = {
            "endpoint": self.endpoint,
            "region": self.region,
            "addressing_style": self.addressing_style,
            "access_key": self._credentials[0],
            "secret_key": self._credentials[1],
            "session_token": self._credentials[2],
        }
        desc.update({k: v for k, v in optional.items() if v})
        return desc

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise as_blob_error(exc, what) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (an existing one is fine)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc)[1] != 404:
                raise as_blob_error(exc, f"checking bucket {self.bucket}") from exc
        except BotoCoreError as exc:
            raise as_blob_error(exc, f"checking bucket {self.bucket}") from exc
        try:
            extra: dict[str, Any] = {}
            if self.region and self.region != "us-east-1":
                extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            self.client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            if _status(exc)[0] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise as_blob_error(exc, f"creating bucket {self.bucket}") from exc

    # -- the protocol ----------------------------------------------------------------------

    def put(self, key: str, src: BinaryIO) -> None:
        full = self._key(key)
        first = _read_full(src, self.part_size)
        second = _read_full(src, self.part_size) if len(first) == self.part_size else b""
        if not second:
            self._call(f"putting {key}", self.client.put_object, Key=full, Body=first)
            return
        head = [first, second]
        del first, second  # the parts are dropped from memory as soon as they are sent
        self._multipart(key, full, src, head)

    def _multipart(self, key: str, full: str, src: BinaryIO, head: list[bytes]) -> None:
        """Upload ``head`` (the first parts, already read) then the rest of ``src``."""
        upload = self._call(
            f"starting upload of {key}", self.client.create_multipart_upload, Key=full
        )
        upload_id = upload["UploadId"]
        slots = threading.BoundedSemaphore(self.concurrency)
        failed = threading.Event()
        futures: list[Future[str]] = []

        def send(number: int, body: bytes) -> str:
            try:
                resp = self._call(
                    f"uploading part {number} of {key}",
                    self.client.upload_part,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
                return str(resp["ETag"])
            except BaseException:
                failed.set()
                raise
            finally:
                slots.release()

        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part") as pool:
                number, chunk = 1, head.pop(0)
                while chunk and not failed.is_set():
                    if number > MAX_PARTS:
                        raise BlobError(f"S3 upload of {key}: more than {MAX_PARTS} parts")
                    slots.acquire()
                    futures.append(pool.submit(send, number, chunk))
                    del chunk
                    if head:
                        chunk = head.pop(0)
                    else:
                        chunk = _read_full(src, self.part_size * (1 + number // PART_GROWTH))
                    number += 1
            etags = [f.result() for f in futures]
            parts = [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]
            self._call(
                f"completing upload of {key}",
                self.client.complete_multipart_upload,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception as exc:
                log.warning("could not abort the S3 upload of %s: %s", key, exc)
            raise

    def open(self, key: str) -> BinaryIO:
        full = self._key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _not_found(exc) or _status(exc)[0] == "NoSuchKey":
                raise BlobNotFound(key) from exc
            raise as_blob_error(exc, f"opening {key}") from exc
        except BotoCoreError as exc:
            raise as_blob_error(exc, f"opening {key}") from exc
        return io.BufferedReader(_Reader(self, full, resp), MiB)

    def stat(self, key: str) -> int | None:
        full = self._key(key)
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise as_blob_error(exc, f"checking {key}") from exc
        except BotoCoreError as exc:
            raise as_blob_error(exc, f"checking {key}") from exc
        return int(resp["ContentLength"])

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if not _not_found(exc):
                raise as_blob_error(exc, f"deleting {key}") from exc
        except BotoCoreError as exc:
            raise as_blob_error(exc, f"deleting {key}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix`` (one paginated listing)."""
        for listed in self.scan(prefix):
            yield listed.key

    def scan(self, prefix: str = "") -> Iterator[Listed]:
        """As :meth:`list`, with ``Size`` and ``LastModified`` from the same listing."""
        head, slash, _ = prefix.rpartition("/")
        if slash:
            try:
                check_key(head)
            except ValueError:
                return
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])[len(self.prefix) :]
                    if key and not key.endswith("/"):
                        yield Listed(key, int(obj["Size"]), obj["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise as_blob_error(exc, f"listing {prefix!r}") from exc

    def flush(self) -> None:
        """Nothing to do: S3 acknowledges an object once it is durable."""
