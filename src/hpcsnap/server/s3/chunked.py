"""Decoding ``Content-Encoding: aws-chunked`` bodies incrementally, checking their signatures.

Such a body is a series of chunks ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n``
ending with a chunk of size 0, optionally followed by trailing headers (checksums, and for
signed trailers ``x-amz-trailer-signature``) and an empty line. With
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` every chunk is signed, each signature chained
to the previous one starting from the request's own signature.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from hpcsnap.server.s3 import sigv4
from hpcsnap.server.s3.errors import S3Error

MAX_LINE = 8192


@dataclass(frozen=True)
class ChunkSigner:
    """What checking chunk signatures needs: the signing key and the request's signature."""

    key: bytes
    request: sigv4.SignedRequest


def _bad(message: str) -> S3Error:
    return S3Error("IncompleteBody", f"malformed aws-chunked body: {message}", 400)


class AwsChunkedDecoder:
    """Feed raw body bytes in, get payload bytes out; :meth:`close` checks the end."""

    def __init__(self, signer: ChunkSigner | None, *, trailer: bool) -> None:
        self._signer = signer
        self._trailer = trailer
        self._previous = signer.request.signature if signer else ""
        self._buf = bytearray()
        self._state = "size"
        self._remaining = 0
        self._chunk_sig = ""
        self._chunk_hash = hashlib.sha256()
        self._trailer_lines: list[bytes] = []
        self.trailers: dict[str, str] = {}

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``; return the payload pieces it completes (possibly none)."""
        out: list[bytes] = []
        self._buf += data
        while self._buf and self._state != "done":
            if self._state == "data":
                piece = bytes(self._buf[: self._remaining])
                del self._buf[: len(piece)]
                self._remaining -= len(piece)
                self._chunk_hash.update(piece)
                out.append(piece)
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            if self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise _bad("chunk data is not followed by CRLF")
                del self._buf[:2]
                self._check_chunk_signature()
                self._state = "size"
                continue
            line = self._line()
            if line is None:
                break
            if self._state == "size":
                self._start_chunk(line)
            else:
                self._trailer_line(line)
        if self._state == "done" and self._buf:
            raise _bad("data after the final chunk")
        return out

    def close(self) -> dict[str, str]:
        """Check that the body ended where it should; return the trailing headers."""
        if self._state != "done":
            raise _bad("the body ended before its final chunk")
        return self.trailers

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_LINE:
                raise _bad("header line too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _start_chunk(self, line: bytes) -> None:
        size_text, _, ext = line.partition(b";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _bad(f"bad chunk size {size_text[:20]!r}") from None
        self._chunk_sig = ""
        if ext:
            name, _, value = ext.partition(b"=")
            if name.strip() == b"chunk-signature":
                self._chunk_sig = value.strip().decode("ascii", "replace")
        if self._signer and not self._chunk_sig:
            raise _bad("a chunk has no chunk-signature")
        self._chunk_hash = hashlib.sha256()
        self._remaining = size
        if size > 0:
            self._state = "data"
            return
        self._check_chunk_signature()
        # trailing headers (if any), then an empty line, end the body
        self._state = "trailer"

    def _check_chunk_signature(self) -> None:
        if not self._signer:
            return
        text = sigv4.chunk_string_to_sign(
            self._signer.request, self._previous, self._chunk_hash.hexdigest()
        )
        if not hmac.compare_digest(sigv4.sign(self._signer.key, text), self._chunk_sig):
            raise S3Error(
                "SignatureDoesNotMatch",
                "The chunk signature we calculated does not match the signature you provided.",
                403,
            )
        self._previous = self._chunk_sig

    def _trailer_line(self, line: bytes) -> None:
        if line:
            self._trailer_lines.append(line)
            return
        self._finish_trailers()
        self._state = "done"

    def _finish_trailers(self) -> None:
        signature = ""
        canonical = b""
        for raw in self._trailer_lines:
            name, colon, value = raw.partition(b":")
            if not colon:
                raise _bad(f"bad trailing header {raw[:40]!r}")
            key = name.strip().lower().decode("ascii", "replace")
            text = value.strip().decode("ascii", "replace")
            if key == "x-amz-trailer-signature":
                signature = text
            else:
                self.trailers[key] = text
                canonical += name.strip().lower() + b":" + value.strip() + b"\n"
        if self._signer and self._trailer:
            if not signature:
                raise _bad("the trailing headers are not signed (x-amz-trailer-signature)")
            text = sigv4.trailer_string_to_sign(self._signer.request, self._previous, canonical)
            if not hmac.compare_digest(sigv4.sign(self._signer.key, text), signature):
                raise S3Error(
                    "SignatureDoesNotMatch",
                    "The trailer signature we calculated does not match the one you provided.",
                    403,
                )
