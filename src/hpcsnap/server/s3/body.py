"""Receiving a request body: streamed to a temporary file (or, for XML, to memory) while it
is decoded (``aws-chunked``), hashed and checked against what the request declared.

Checked: ``x-amz-content-sha256`` (a hex digest, or per-chunk signatures for streaming
uploads), ``Content-MD5``, the ``x-amz-checksum-crc32``/``sha1``/``sha256`` headers or
trailers, and ``x-amz-decoded-content-length``. A body that fails a check is discarded and
nothing is stored. (CRC32C and CRC64NVME checksums are accepted without being checked.)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import xxhash
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hpcsnap.server.s3 import sigv4
from hpcsnap.server.s3.access import Principal
from hpcsnap.server.s3.chunked import AwsChunkedDecoder, ChunkSigner
from hpcsnap.server.s3.errors import S3Error

WRITE_BUFFER = 1 << 20


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


_CHECKSUMS: dict[str, Callable[[], Any]] = {
    "crc32": _Crc32,
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
}


@dataclass(frozen=True)
class Received:
    """A body received into the file ``path``: its size and hashes (MD5, content digest)."""

    path: Path
    size: int
    md5: str
    digest: str


class BodyCheck:
    """Everything computed over one body, fed piece by piece, checked by :meth:`finish`."""

    def __init__(self, headers: Mapping[str, str], principal: Principal) -> None:
        self._headers = headers
        self._declared = principal.request.payload_hash
        self._raw_sha = hashlib.sha256() if self._declared not in _NO_RAW_HASH else None
        self._decoder: AwsChunkedDecoder | None = None
        if self._declared in sigv4.STREAMING:
            signed = self._declared != sigv4.STREAMING_UNSIGNED_TRAILER
            signer = ChunkSigner(principal.signing_key, principal.request) if signed else None
            trailer = self._declared != sigv4.STREAMING_SIGNED
            self._decoder = AwsChunkedDecoder(signer, trailer=trailer)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.xxh = xxhash.xxh3_128()
        self.size = 0
        self._checks: dict[str, Any] = {}
        names = {n[len("x-amz-checksum-") :] for n in headers if n.startswith("x-amz-checksum-")}
        trailer_name = headers.get("x-amz-trailer", "").strip().lower()
        if trailer_name.startswith("x-amz-checksum-"):
            names.add(trailer_name[len("x-amz-checksum-") :])
        for name in names:
            if name in _CHECKSUMS:
                self._checks[name] = _CHECKSUMS[name]()

    def feed(self, raw: bytes) -> list[bytes]:
        if self._raw_sha is not None:
            self._raw_sha.update(raw)
        pieces = self._decoder.feed(raw) if self._decoder else [raw]
        for piece in pieces:
            self.md5.update(piece)
            self.xxh.update(piece)
            for check in self._checks.values():
                check.update(piece)
            self.size += len(piece)
        return pieces

    def finish(self) -> None:
        trailers = self._decoder.close() if self._decoder else {}
        if self._raw_sha is not None and self._raw_sha.hexdigest() != self._declared:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        decoded = self._headers.get("x-amz-decoded-content-length")
        if self._decoder and decoded is not None and decoded.strip() != str(self.size):
            raise S3Error(
                "IncompleteBody",
                f"x-amz-decoded-content-length says {decoded} bytes, the body held {self.size}",
            )
        content_md5 = self._headers.get("content-md5")
        if content_md5 is not None:
            _compare(content_md5, self.md5.digest(), "Content-MD5", "InvalidDigest")
        for name, check in self._checks.items():
            claimed = trailers.get(f"x-amz-checksum-{name}") or self._headers.get(
                f"x-amz-checksum-{name}"
            )
            if claimed is not None:
                _compare(claimed, check.digest(), f"x-amz-checksum-{name}", "InvalidRequest")


_NO_RAW_HASH = sigv4.STREAMING | {sigv4.UNSIGNED_PAYLOAD}


def _compare(claimed_b64: str, actual: bytes, what: str, bad_format_code: str) -> None:
    try:
        claimed = base64.b64decode(claimed_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise S3Error(bad_format_code, f"{what} is not valid base64") from None
    if claimed != actual:
        raise S3Error(
            "BadDigest", f"The {what} you specified did not match the content we received."
        )


async def receive_file(
    request: Request, headers: Mapping[str, str], principal: Principal, tmpdir: Path, limit: int
) -> Received:
    """Stream the body to a new file in ``tmpdir`` (deleted again if anything fails)."""
    declared = headers.get("x-amz-decoded-content-length") or headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    check = BodyCheck(headers, principal)
    tmpdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmpdir, prefix="s3-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            batch: list[bytes] = []
            pending = 0
            async for raw in request.stream():
                batch.append(raw)
                pending += len(raw)
                if pending >= WRITE_BUFFER:
                    # decoding and hashing in a worker thread too: the event loop stays free
                    await run_in_threadpool(_process, check, batch, out, limit)
                    batch, pending = [], 0
            await run_in_threadpool(_process, check, batch, out, limit)
        check.finish()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, check.size, check.md5.hexdigest(), check.xxh.hexdigest())


async def receive_bytes(
    request: Request, headers: Mapping[str, str], principal: Principal, limit: int
) -> bytes:
    """The whole (small) body in memory, checked."""
    check = BodyCheck(headers, principal)
    data = bytearray()
    async for raw in request.stream():
        for piece in check.feed(raw):
            data += piece
        if len(data) > limit:
            raise _too_large(limit)
    check.finish()
    return bytes(data)


def _process(check: BodyCheck, batch: list[bytes], out: BinaryIO, limit: int) -> None:
    for raw in batch:
        for piece in check.feed(raw):
            out.write(piece)
    if check.size > limit:
        raise _too_large(limit)


def _too_large(limit: int) -> S3Error:
    return S3Error(
        "EntityTooLarge",
        f"Your proposed upload exceeds the maximum allowed size ({limit} bytes); use a "
        "multipart upload for large objects.",
    )


def discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
