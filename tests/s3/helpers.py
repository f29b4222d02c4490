"""Helpers for S3 clients against a real server: users with S3 credentials, boto3 clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config

from tests.support import Api, ServerProcess, hpcsnap


@dataclass
class S3User:
    """A user of a running server with the S3 credentials the qarnot SDK would use."""

    api: Api
    email: str
    token: str
    endpoint: str

    def client(self, *, secret: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client signed with this user's email and token (or ``secret``)."""
        conf = botocore.config.Config(
            retries={"max_attempts": 1, "mode": "standard"},
            request_checksum_calculation=config.pop("checksums", "when_supported"),
            **config,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.email,
            aws_secret_access_key=secret or self.token,
            config=conf,
        )


def s3_user(server: ServerProcess, name: str) -> S3User:
    """A new user whose token has been used once on the REST API (so it can sign S3)."""
    # the server's environment: it says where the metadata is (e.g. PostgreSQL)
    args = ("user", "create", name, "--data-dir", str(server.data_dir))
    token = hpcsnap(*args, env=server.env).stdout.strip()
    api = Api(server.url, token)
    email = api.ok("GET", "/info")["email"]
    storage = api.ok("GET", "/settings")["storage"]
    return S3User(api=api, email=email, token=token, endpoint=storage)


def error_code(exc: Exception) -> str:
    return str(exc.response["Error"]["Code"])  # type: ignore[attr-defined]
