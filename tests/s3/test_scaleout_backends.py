"""The S3 endpoint of a server whose metadata is in PostgreSQL (with a collation that does not
sort by code point) and whose blobs are in an S3 store: listings keep S3's order, ranges and
multipart uploads work over a blob store that cannot seek (issue: Qarnot compatibility)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from boto3.s3.transfer import TransferConfig

from tests import services
from tests.s3.helpers import S3User, s3_user
from tests.support import ServerProcess

MiB = 1 << 20


def icu_database(pg: services.Postgres) -> str:
    """A database whose default collation sorts ``aB`` before ``a_b`` (ICU en-US)."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE DATABASE s3_icu TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    return pg.url("s3_icu")


@pytest.fixture(scope="module")
def scaled(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: services.Postgres,
    s3_server: services.S3Server,
) -> Iterator[ServerProcess]:
    env = {"HPCSNAP_DATABASE_URL": icu_database(postgres)}
    env.update(s3_server.server_env(s3_server.new_bucket()))
    with ServerProcess(tmp_path_factory.mktemp("scaled"), **env) as srv:
        yield srv


@pytest.fixture(scope="module")
def user(scaled: ServerProcess) -> S3User:
    return s3_user(scaled, "scaled")


def test_listing_order_and_prefixes_on_postgresql(user: S3User) -> None:
    s3: Any = user.client()
    s3.create_bucket(Bucket="order")
    keys = ["A", "a-b", "a/b", "a/c/d", "aB", "a_b", "ab", "z", "é", "é/x"]
    for key in reversed(keys):
        s3.put_object(Bucket="order", Key=key, Body=key.encode())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="order")["Contents"]]
    assert listed == sorted(keys)  # code point order, as S3
    paged, token = [], None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="order", Delimiter="/", MaxKeys=2, **extra)
        entries = [o["Key"] for o in page.get("Contents", [])]
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(entries) <= 2
        paged += sorted(entries)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert paged == ["A", "a-b", "a/", "aB", "a_b", "ab", "z", "é", "é/"]
    under = s3.list_objects(Bucket="order", Prefix="a/")["Contents"]
    assert [o["Key"] for o in under] == ["a/b", "a/c/d"]


def test_ranges_and_multipart_over_an_s3_blob_store(user: S3User, tmp_path: Path) -> None:
    s3: Any = user.client()
    s3.create_bucket(Bucket="blobs")
    data = os.urandom(6 * MiB + 5)
    s3.upload_fileobj(
        io.BytesIO(data),
        "blobs",
        "big.bin",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    assert s3.head_object(Bucket="blobs", Key="big.bin")["ETag"].endswith('-2"')
    got = s3.get_object(Bucket="blobs", Key="big.bin", Range="bytes=5242870-5242889")
    assert got["Body"].read() == data[5242870:5242890]
    s3.download_file("blobs", "big.bin", str(tmp_path / "big.bin"))
    assert (tmp_path / "big.bin").read_bytes() == data
