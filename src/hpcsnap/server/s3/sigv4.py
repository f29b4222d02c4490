"""AWS Signature Version 4, checked the way S3 checks it.

Pure functions of a request's parts (no I/O): :func:`parse` reads what a request claims
(header ``Authorization: AWS4-HMAC-SHA256 ...`` or a presigned query), :func:`expected`
computes the signature a secret key gives, and the chunk/trailer functions sign the pieces of
an ``aws-chunked`` body. Callers compare signatures with :func:`hmac.compare_digest`.

S3 signs the URI path as sent (no double encoding). Clients do not all encode a path alike,
so :func:`canonical_uris` offers the path as received and the path re-encoded with AWS's
rules; a signature matching either is accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_plus

from hpcsnap.server.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = dt.timedelta(minutes=15)
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")


def _denied(code: str, message: str, status: int = 403) -> S3Error:
    return S3Error(code, message, status)


@dataclass(frozen=True)
class Credential:
    """``<access key>/<date>/<region>/<service>/aws4_request``."""

    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @classmethod
    def parse(cls, raw: str) -> Credential:
        # The access key (an email here) may itself contain '/': split from the right.
        parts = raw.rsplit("/", 4)
        if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
            raise _denied(
                "AuthorizationHeaderMalformed",
                f"the credential {raw!r} is not <access key>/<date>/<region>/s3/aws4_request",
                400,
            )
        if parts[3] != "s3":
            raise _denied(
                "AuthorizationHeaderMalformed",
                f"the credential is scoped to service {parts[3]!r}; this endpoint is 's3'",
                400,
            )
        return cls(*parts[:4])


@dataclass(frozen=True)
class SignedRequest:
    """What a request claims about its signature."""

    credential: Credential
    timestamp: str
    signed_headers: tuple[str, ...]
    signature: str
    payload_hash: str
    presigned: bool
    expires: int | None = None


def _parse_timestamp(raw: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(raw, _TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        raise _denied(
            "AccessDenied", f"X-Amz-Date {raw!r} is not in the format YYYYMMDDTHHMMSSZ"
        ) from None


def _check_time(req: SignedRequest, now: dt.datetime) -> None:
    when = _parse_timestamp(req.timestamp)
    if req.credential.date != req.timestamp[:8]:
        raise _denied(
            "SignatureDoesNotMatch",
            f"the credential date {req.credential.date} is not the day of X-Amz-Date "
            f"{req.timestamp}",
        )
    if req.presigned:
        assert req.expires is not None
        if now < when - MAX_SKEW:
            raise _denied("AccessDenied", "Request is not valid yet (X-Amz-Date is ahead)")
        if now > when + dt.timedelta(seconds=req.expires):
            raise _denied("AccessDenied", "Request has expired")
    elif abs(now - when) > MAX_SKEW:
        err = _denied(
            "RequestTimeTooSkewed",
            "The difference between the request time and the server's time is too large "
            f"(request {when:%Y-%m-%dT%H:%M:%SZ}, server {now:%Y-%m-%dT%H:%M:%SZ}).",
        )
        raise err


def parse(
    headers: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    *,
    now: dt.datetime | None = None,
) -> SignedRequest:
    """The signature a request claims, from its (lower-case) headers or presigned query.

    Raises :class:`S3Error` when it is malformed, expired or too far in time from ``now``.
    """
    now = now or dt.datetime.now(dt.UTC)
    auth = headers.get("authorization", "")
    params = dict(query)
    if auth:
        req = _parse_header(auth, headers)
    elif "X-Amz-Algorithm" in params:
        req = _parse_query(params, headers)
    elif "AWSAccessKeyId" in params:
        raise _denied(
            "InvalidRequest",
            "AWS Signature Version 2 is not supported: sign with Signature Version 4 (with "
            "boto3: Config(signature_version='s3v4'))",
            400,
        )
    else:
        raise _denied("AccessDenied", "the request is not signed (AWS Signature Version 4)")
    _check_time(req, now)
    return req


def _parse_header(auth: str, headers: Mapping[str, str]) -> SignedRequest:
    algorithm, _, rest = auth.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _denied(
            "InvalidRequest",
            f"unsupported authorization scheme {algorithm!r}: use AWS Signature Version 4 "
            f"({ALGORITHM})",
            400,
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if eq:
            fields[name.strip()] = value.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
    if missing:
        raise _denied(
            "AuthorizationHeaderMalformed",
            f"the Authorization header lacks {', '.join(missing)}",
            400,
        )
    timestamp = headers.get("x-amz-date") or ""
    if not timestamp:
        raise _denied("AccessDenied", "AWS authentication requires the header X-Amz-Date")
    payload = headers.get("x-amz-content-sha256", "")
    if not payload:
        raise _denied(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256", 400
        )
    if (
        payload not in STREAMING
        and payload != UNSIGNED_PAYLOAD
        and not _SHA256_HEX.fullmatch(payload)
    ):
        raise _denied(
            "InvalidArgument", f"x-amz-content-sha256 {payload!r} must be a SHA-256 hex digest", 400
        )
    return SignedRequest(
        credential=Credential.parse(fields["Credential"]),
        timestamp=timestamp,
        signed_headers=_signed_headers(fields["SignedHeaders"], headers),
        signature=fields["Signature"],
        payload_hash=payload,
        presigned=False,
    )


def _parse_query(params: Mapping[str, str], headers: Mapping[str, str]) -> SignedRequest:
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise _denied(
            "AuthorizationQueryParametersError",
            f"X-Amz-Algorithm must be {ALGORITHM}",
            400,
        )
    missing = [
        f"X-Amz-{f}"
        for f in ("Credential", "Date", "Expires", "SignedHeaders", "Signature")
        if not params.get(f"X-Amz-{f}")
    ]
    if missing:
        raise _denied(
            "AuthorizationQueryParametersError",
            f"the presigned URL lacks {', '.join(missing)}",
            400,
        )
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        expires = -1
    if not 0 <= expires <= MAX_PRESIGN_SECONDS:
        raise _denied(
            "AuthorizationQueryParametersError",
            f"X-Amz-Expires must be between 0 and {MAX_PRESIGN_SECONDS} seconds",
            400,
        )
    return SignedRequest(
        credential=Credential.parse(params["X-Amz-Credential"]),
        timestamp=params["X-Amz-Date"],
        signed_headers=_signed_headers(params["X-Amz-SignedHeaders"], headers),
        signature=params["X-Amz-Signature"],
        payload_hash=headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD,
        presigned=True,
        expires=expires,
    )


def _signed_headers(raw: str, headers: Mapping[str, str]) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in raw.split(";") if n.strip())
    if "host" not in names:
        raise _denied("AccessDenied", "the Host header must be signed", 403)
    absent = [n for n in names if n not in headers]
    if absent:
        raise _denied(
            "AccessDenied", f"signed header(s) {', '.join(absent)} missing from the request"
        )
    return names


def uri_encode(value: str, *, keep_slash: bool) -> str:
    """AWS's URI encoding: every byte but ``A-Za-z0-9-_.~`` (and ``/`` if kept) as ``%XX``."""
    return quote(value, safe="/-_.~" if keep_slash else "-_.~")


def canonical_uris(raw_path: str) -> list[str]:
    """The canonical URI candidates of a path as received (see the module docstring)."""
    as_sent = raw_path or "/"
    normalised = uri_encode(unquote(as_sent, errors="strict"), keep_slash=True)
    return [as_sent] if normalised == as_sent else [as_sent, normalised]


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of a raw query string, decoded (``+`` is a space)."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]], *, presigned: bool) -> str:
    encoded = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False))
        for k, v in pairs
        if not (presigned and k == "X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(req: SignedRequest, headers: Mapping[str, str]) -> str:
    return "".join(
        f"{name}:{_SPACES.sub(' ', headers[name].strip())}\n" for name in req.signed_headers
    )


def canonical_request(
    method: str, uri: str, query: str, req: SignedRequest, headers: Mapping[str, str]
) -> str:
    return "\n".join(
        [
            method,
            uri,
            query,
            canonical_headers(req, headers),
            ";".join(req.signed_headers),
            req.payload_hash,
        ]
    )


def string_to_sign(req: SignedRequest, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{req.timestamp}\n{req.credential.scope}\n{digest}"


def signing_key(secret: str, credential: Credential) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), credential.date)
    for part in (credential.region, credential.service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def strings_to_sign(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    req: SignedRequest,
    headers: Mapping[str, str],
) -> list[str]:
    """Every string to sign this request may have been signed as (one per URI candidate)."""
    cq = canonical_query(query, presigned=req.presigned)
    return [
        string_to_sign(req, canonical_request(method, uri, cq, req, headers))
        for uri in canonical_uris(raw_path)
    ]


def matches(key: bytes, candidates: Sequence[str], signature: str) -> bool:
    """Whether ``signature`` signs one of ``candidates`` with ``key`` (constant time each)."""
    found = False
    for text in candidates:
        found |= hmac.compare_digest(sign(key, text), signature)
    return found


def chunk_string_to_sign(req: SignedRequest, previous: str, chunk_sha256: str) -> str:
    """What the signature of one ``aws-chunked`` chunk signs."""
    return "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            req.timestamp,
            req.credential.scope,
            previous,
            EMPTY_SHA256,
            chunk_sha256,
        ]
    )


def trailer_string_to_sign(req: SignedRequest, previous: str, trailer: bytes) -> str:
    """What the signature of an ``aws-chunked`` body's trailing headers signs."""
    return "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            req.timestamp,
            req.credential.scope,
            previous,
            hashlib.sha256(trailer).hexdigest(),
        ]
    )
