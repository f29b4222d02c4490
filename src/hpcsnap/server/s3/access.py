"""Who signed an S3 request: access key (email) → user → sealed tokens → matching signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from hpcsnap.server.db import Database, Token, User
from hpcsnap.server.s3 import sigv4
from hpcsnap.server.s3.errors import S3Error
from hpcsnap.server.s3.secrets import Sealer


@dataclass(frozen=True)
class Principal:
    """An authenticated S3 caller, with what checking its chunked uploads needs."""

    user_id: int
    email: str
    signing_key: bytes
    request: sigv4.SignedRequest

    @property
    def owner_id(self) -> str:
        """S3's owner ID of the caller (a stable opaque string)."""
        return f"hpcsnap-user-{self.user_id}"


def _secrets(db: Database, sealer: Sealer, access_key: str) -> tuple[int, list[str], bool]:
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == access_key))
        if user is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records: use the "
                "email of your hpcsnap account (GET /v1/info says which).",
                403,
            )
        sealed = s.scalars(
            select(Token.sealed).where(
                Token.user_id == user.id, Token.kind == "user", Token.revoked_at.is_(None)
            )
        ).all()
    secrets = [x for x in (sealer.unseal(v) for v in sealed if v) if x is not None]
    return user.id, secrets, len(secrets) < len(sealed)


_NOT_SEALED_HINT = (
    " An API token that was never used with the REST API cannot sign S3 requests yet: make "
    "one REST call with it first (e.g. GET /v1/info; qarnot.Connection does)."
)


def authenticate(
    db: Database,
    sealer: Sealer,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
) -> Principal:
    """The principal whose API token signed this request, else an S3 ``403`` error."""
    req = sigv4.parse(headers, query)
    user_id, secrets, some_unsealed = _secrets(db, sealer, req.credential.access_key)
    try:
        candidates = sigv4.strings_to_sign(method, raw_path, query, req, headers)
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI (not UTF-8).") from None
    for secret in secrets:
        key = sigv4.signing_key(secret, req.credential)
        if sigv4.matches(key, candidates, req.signature):
            return Principal(user_id, req.credential.access_key, key, req)
    if not secrets:
        raise S3Error(
            "InvalidAccessKeyId",
            f"No API token of {req.credential.access_key} can sign S3 requests yet."
            + _NOT_SEALED_HINT,
            403,
        )
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your secret key (your hpcsnap API token) and signing method."
    )
    hint = _NOT_SEALED_HINT if some_unsealed else ""
    raise S3Error("SignatureDoesNotMatch", message + hint, 403)
