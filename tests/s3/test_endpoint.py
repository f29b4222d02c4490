"""The S3 endpoint against a real server process, driven by boto3 and by hand-signed requests
(issue: Qarnot compatibility, part 2)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import random
import sqlite3
import zlib
from typing import Any

import botocore.exceptions
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hpcsnap.server.s3 import sigv4
from tests.s3.helpers import S3User, error_code, s3_user
from tests.support import ServerProcess

MiB = 1 << 20
ClientError = botocore.exceptions.ClientError


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> S3User:
    return s3_user(server, "s3alice")


@pytest.fixture(scope="module")
def s3(alice: S3User) -> Any:
    return alice.client()


def signed(
    user: S3User,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: str = "",
    headers: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    send: bytes | None = None,
) -> httpx.Response:
    """A request signed by botocore's own SigV4 signer; ``send`` replaces the body sent."""
    url = user.endpoint + path + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    request.context.update(context or {})
    S3SigV4Auth(Credentials(user.email, user.token), "s3", "us-east-1").add_auth(request)
    content = body if send is None else send
    return httpx.request(method, url, headers=dict(request.headers.items()), content=content)


def md5_etag(*parts: bytes) -> str:
    if len(parts) == 1:
        return '"' + hashlib.md5(parts[0]).hexdigest() + '"'
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_buckets_create_idempotent_head_list_delete(s3: Any) -> None:
    assert s3.create_bucket(Bucket="lifecycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # as AWS us-east-1: creating a bucket you own again is fine (the qarnot SDK relies on it)
    assert s3.create_bucket(Bucket="lifecycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.head_bucket(Bucket="lifecycle")
    assert "lifecycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket="lifecycle", Key="k", Body=b"x")
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket="lifecycle")
    assert error_code(busy.value) == "BucketNotEmpty"
    s3.delete_object(Bucket="lifecycle", Key="k")
    s3.delete_bucket(Bucket="lifecycle")
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket="lifecycle")
    assert error_code(gone.value) == "404"
    with pytest.raises(ClientError) as bad:
        s3.create_bucket(Bucket="Bad_Name")
    assert error_code(bad.value) == "InvalidBucketName"


def test_put_get_head_metadata_ranges_and_conditions(s3: Any) -> None:
    s3.create_bucket(Bucket="objects")
    data = os.urandom(300_000)
    put = s3.put_object(
        Bucket="objects",
        Key="dir/data.bin",
        Body=data,
        ContentType="application/x-test",
        Metadata={"origin": "test"},
    )
    assert put["ETag"] == md5_etag(data)
    head = s3.head_object(Bucket="objects", Key="dir/data.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == md5_etag(data)
    assert head["ContentType"] == "application/x-test" and head["Metadata"] == {"origin": "test"}
    assert s3.get_object(Bucket="objects", Key="dir/data.bin")["Body"].read() == data
    for spec, want in [
        ("bytes=10-19", data[10:20]),
        ("bytes=299990-", data[299990:]),
        ("bytes=-7", data[-7:]),
        ("bytes=299000-999999", data[299000:]),
    ]:
        got = s3.get_object(Bucket="objects", Key="dir/data.bin", Range=spec)
        assert got["Body"].read() == want and got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith(f"/{len(data)}")
    with pytest.raises(ClientError) as unsatisfiable:
        s3.get_object(Bucket="objects", Key="dir/data.bin", Range="bytes=400000-")
    assert error_code(unsatisfiable.value) == "InvalidRange"
    with pytest.raises(ClientError) as not_modified:
        s3.get_object(Bucket="objects", Key="dir/data.bin", IfNoneMatch=md5_etag(data))
    assert error_code(not_modified.value) == "304"
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket="objects", Key="dir/data.bin", IfMatch='"0000"')
    assert error_code(failed.value) == "PreconditionFailed"
    over = s3.get_object(
        Bucket="objects", Key="dir/data.bin", ResponseContentDisposition="attachment"
    )
    assert over["ContentDisposition"] == "attachment"
    empty = s3.put_object(Bucket="objects", Key="empty", Body=b"")
    assert empty["ETag"] == md5_etag(b"")
    assert s3.get_object(Bucket="objects", Key="empty")["Body"].read() == b""


def test_multipart_parts_out_of_order_give_aws_etag(s3: Any) -> None:
    s3.create_bucket(Bucket="multi")
    parts = [os.urandom(5 * MiB) for _ in range(3)] + [os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket="multi", Key="big.bin", ContentType="x/y")
    uid = upload["UploadId"]
    order = [4, 2, 3, 1]
    etags = {}
    for n in order:
        etags[n] = s3.upload_part(
            Bucket="multi", Key="big.bin", UploadId=uid, PartNumber=n, Body=parts[n - 1]
        )["ETag"]
    # a part sent again replaces the first one
    etags[2] = s3.upload_part(
        Bucket="multi", Key="big.bin", UploadId=uid, PartNumber=2, Body=parts[1]
    )["ETag"]
    listed = s3.list_parts(Bucket="multi", Key="big.bin", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2, 3, 4]
    assert [p["ETag"] for p in listed] == [etags[n] for n in (1, 2, 3, 4)]
    uploads = s3.list_multipart_uploads(Bucket="multi")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [uid]
    with pytest.raises(ClientError) as bad_part:
        s3.complete_multipart_upload(
            Bucket="multi",
            Key="big.bin",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]},
        )
    assert error_code(bad_part.value) == "InvalidPart"
    done = s3.complete_multipart_upload(
        Bucket="multi",
        Key="big.bin",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3, 4)]},
    )
    assert done["ETag"] == md5_etag(*parts)
    whole = b"".join(parts)
    head = s3.head_object(Bucket="multi", Key="big.bin")
    assert head["ETag"] == md5_etag(*parts) and head["ContentLength"] == len(whole)
    assert head["ContentType"] == "x/y"
    assert s3.get_object(Bucket="multi", Key="big.bin")["Body"].read() == whole
    listing = s3.list_objects(Bucket="multi")["Contents"]
    assert [(o["Key"], o["ETag"]) for o in listing] == [("big.bin", md5_etag(*parts))]
    # abort: the upload disappears
    other = s3.create_multipart_upload(Bucket="multi", Key="aborted")["UploadId"]
    s3.abort_multipart_upload(Bucket="multi", Key="aborted", UploadId=other)
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket="multi", Key="aborted", UploadId=other)
    assert error_code(gone.value) == "NoSuchUpload"
    # boto3's managed transfer (parallel parts) round-trips too
    blob = os.urandom(17 * MiB + 3)
    s3.upload_fileobj(io.BytesIO(blob), "multi", "managed.bin")
    out = io.BytesIO()
    s3.download_fileobj("multi", "managed.bin", out)
    assert out.getvalue() == blob


def test_listings_v1_v2_prefix_delimiter_paging_and_url_encoding(alice: S3User, s3: Any) -> None:
    s3.create_bucket(Bucket="listing")
    keys = sorted(
        [f"snapshots/2026-01-0{i}/f{j}.dat" for i in range(1, 4) for j in range(3)]
        + ["a b/c+d.txt", "été/日本.txt", "top.txt", "z%25/x", "snapshots.txt"]
    )
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    # v1, whole bucket, paged by 4 with Marker
    seen, marker = [], ""
    while True:
        page = s3.list_objects(Bucket="listing", MaxKeys=4, Marker=marker)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert seen == keys
    assert all(o["ETag"].startswith('"') for o in page["Contents"])
    # the paginators of v1 and v2, with a delimiter: prefixes roll up, each counted once
    for name in ("list_objects", "list_objects_v2"):
        pages = s3.get_paginator(name).paginate(
            Bucket="listing", Delimiter="/", PaginationConfig={"PageSize": 2}
        )
        files, prefixes = [], []
        for page in pages:
            files += [o["Key"] for o in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert files == ["snapshots.txt", "top.txt"], name
        assert prefixes == ["a b/", "snapshots/", "z%25/", "été/"], name
    sub = s3.list_objects_v2(Bucket="listing", Prefix="snapshots/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == [
        f"snapshots/2026-01-0{i}/" for i in range(1, 4)
    ]
    inner = s3.list_objects_v2(Bucket="listing", Prefix="snapshots/2026-01-02/")
    assert [o["Key"] for o in inner["Contents"]] == [
        f"snapshots/2026-01-02/f{j}.dat" for j in range(3)
    ]
    assert inner["KeyCount"] == 3
    after = s3.list_objects_v2(Bucket="listing", StartAfter="top.txt")
    assert [o["Key"] for o in after["Contents"]] == ["z%25/x", "été/日本.txt"]
    # the SDK's resource listing (ListObjects v1 with encoding-type=url) decodes every key
    raw = signed(alice, "GET", "/listing", query="encoding-type=url&prefix=a%20b")
    assert "<Key>a%20b/c%2Bd.txt</Key>" in raw.text and "<EncodingType>url" in raw.text


def test_copy_delete_versions_and_purge_like_the_sdk(s3: Any) -> None:
    s3.create_bucket(Bucket="copies")
    s3.put_object(Bucket="copies", Key="src.txt", Body=b"hello", Metadata={"a": "1"})
    copied = s3.copy_object(
        Bucket="copies", Key="dst/copy.txt", CopySource={"Bucket": "copies", "Key": "src.txt"}
    )
    assert copied["CopyObjectResult"]["ETag"] == md5_etag(b"hello")
    assert s3.head_object(Bucket="copies", Key="dst/copy.txt")["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket="copies",
        Key="dst/replaced.txt",
        CopySource="copies/src.txt",
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
    )
    assert s3.head_object(Bucket="copies", Key="dst/replaced.txt")["Metadata"] == {"b": "2"}
    assert s3.get_object(Bucket="copies", Key="dst/replaced.txt")["Body"].read() == b"hello"
    with pytest.raises(ClientError) as missing:
        s3.copy_object(Bucket="copies", Key="x", CopySource="copies/nothing")
    assert error_code(missing.value) == "NoSuchKey"
    # unversioned buckets: no status, and one "null" version per key
    assert "Status" not in s3.get_bucket_versioning(Bucket="copies")
    versions = s3.list_object_versions(Bucket="copies")["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("dst/copy.txt", "null", True),
        ("dst/replaced.txt", "null", True),
        ("src.txt", "null", True),
    ]
    # what bucket.delete() of the qarnot SDK does: versions → DeleteObjects → DeleteBucket
    result = s3.delete_objects(
        Bucket="copies",
        Delete={
            "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
            + [{"Key": "never-existed"}, {"Key": "src.txt", "VersionId": "v9"}]
        },
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == [
        "dst/copy.txt",
        "dst/replaced.txt",
        "never-existed",
        "src.txt",
    ]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("src.txt", "NoSuchVersion")]
    assert s3.list_objects(Bucket="copies").get("Contents") is None
    s3.delete_object(Bucket="copies", Key="absent-is-fine")
    s3.delete_bucket(Bucket="copies")


def test_errors_are_s3_xml(alice: S3User, s3: Any) -> None:
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="no-such-bucket", Key="k")
    assert error_code(no_bucket.value) == "NoSuchBucket"
    assert no_bucket.value.response["Error"]["BucketName"] == "no-such-bucket"
    s3.create_bucket(Bucket="errors")
    with pytest.raises(ClientError) as no_key:
        s3.get_object(Bucket="errors", Key="nope")
    assert error_code(no_key.value) == "NoSuchKey"
    for bad in ("a/../b", "/lead", "a//b", "./x"):
        response = signed(alice, "PUT", "/errors/" + bad.replace("/", "%2F"), body=b"x")
        assert response.status_code == 400 and "<Code>InvalidArgument</Code>" in response.text
    response = signed(alice, "GET", "/errors", query="tagging=")
    assert response.status_code == 501 and "<Code>NotImplemented</Code>" in response.text
    response = signed(alice, "POST", "/errors/k")
    assert response.status_code == 405 and "MethodNotAllowed" in response.text


def test_authentication_failures_and_presigned_urls(server: ServerProcess, alice: S3User) -> None:
    with pytest.raises(ClientError) as wrong:
        alice.client(secret="hps_not-the-token").list_buckets()
    assert error_code(wrong.value) == "SignatureDoesNotMatch"
    stranger = S3User(alice.api, "nobody@example.org", alice.token, alice.endpoint)
    with pytest.raises(ClientError) as unknown:
        stranger.client().list_buckets()
    assert error_code(unknown.value) == "InvalidAccessKeyId"
    # `hpcsnap user create` seals the new token: it signs S3 requests before any REST call
    fresh = server.user("s3fresh")
    token = str(fresh.http.headers["Authorization"])
    newcomer = S3User(fresh, "s3fresh@hpcsnap.local", token, alice.endpoint)
    assert newcomer.client().list_buckets()["Buckets"] == []
    # a token without a sealed copy (made before S3 existed): a clear error, then its first
    # REST call seals it
    with sqlite3.connect(server.data_dir / "hpcsnap.db") as db:
        db.execute(
            "UPDATE tokens SET sealed = NULL"
            " WHERE user_id = (SELECT id FROM users WHERE name = 's3fresh')"
        )
    with pytest.raises(ClientError) as unsealed:
        newcomer.client().list_buckets()
    assert error_code(unsealed.value) == "InvalidAccessKeyId"
    assert "GET /v1/info" in unsealed.value.response["Error"]["Message"]
    fresh.ok("GET", "/info")
    assert newcomer.client().list_buckets()["Buckets"] == []
    # presigned URLs (SigV4 query authentication)
    s3v4 = alice.client(signature_version="s3v4")
    s3v4.create_bucket(Bucket="presigned")
    put_url = s3v4.generate_presigned_url("put_object", Params={"Bucket": "presigned", "Key": "p"})
    assert httpx.put(put_url, content=b"via url").status_code == 200
    get_url = s3v4.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "p"})
    assert httpx.get(get_url).content == b"via url"
    assert httpx.get(get_url.replace("presigned/p", "presigned/q")).status_code == 403
    # a request with no signature at all is REST's business: JSON, not XML
    assert httpx.get(alice.endpoint + "/presigned/p").status_code == 404


def test_payload_integrity_is_checked(alice: S3User, s3: Any) -> None:
    s3.create_bucket(Bucket="integrity")
    tampered = signed(alice, "PUT", "/integrity/t", body=b"signed body", send=b"other body!")
    assert tampered.status_code == 400 and "XAmzContentSHA256Mismatch" in tampered.text
    bad_md5 = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
    response = signed(alice, "PUT", "/integrity/m", body=b"data", headers={"Content-MD5": bad_md5})
    assert response.status_code == 400 and "BadDigest" in response.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket="integrity", Key="t")
    with pytest.raises(ClientError):
        s3.put_object(Bucket="integrity", Key="c", Body=b"abc", ChecksumCRC32="AAAAAA==")
    # aws-chunked with an unsigned payload and a CRC32 trailer (what SDKs send over HTTPS)
    data = b"hello, chunked world"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    chunked = (
        b"a\r\n" + data[:10] + b"\r\n" + b"a\r\n" + data[10:] + b"\r\n0\r\n"
        b"x-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    )
    trailer = {"request_algorithm": {"in": "trailer", "algorithm": "crc32"}}
    chunk_headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    response = signed(
        alice,
        "PUT",
        "/integrity/chunked",
        body=chunked,
        headers=chunk_headers,
        context={"checksum": trailer},
    )
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket="integrity", Key="chunked")["Body"].read() == data
    wrong = chunked.replace(crc.encode(), b"AAAAAA==")
    response = signed(
        alice,
        "PUT",
        "/integrity/c2",
        body=wrong,
        headers=chunk_headers,
        context={"checksum": trailer},
    )
    assert response.status_code == 400 and "BadDigest" in response.text
    # aws-chunked with signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
    assert (
        put_signed_chunks(alice, "/integrity/signed", [b"x" * 70000, b"y" * 10]).status_code == 200
    )
    assert (
        s3.get_object(Bucket="integrity", Key="signed")["Body"].read() == b"x" * 70000 + b"y" * 10
    )
    forged = put_signed_chunks(alice, "/integrity/forged", [b"a" * 10, b"b"], forge=True)
    assert forged.status_code == 403 and "SignatureDoesNotMatch" in forged.text


def put_signed_chunks(
    user: S3User, path: str, chunks: list[bytes], *, forge: bool = False
) -> httpx.Response:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    host = user.endpoint.removeprefix("http://")
    headers = {
        "host": host,
        "x-amz-date": now,
        "x-amz-content-sha256": sigv4.STREAMING_SIGNED,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(sum(map(len, chunks))),
    }
    cred = sigv4.Credential(user.email, now[:8], "us-east-1", "s3")
    req = sigv4.SignedRequest(cred, now, tuple(sorted(headers)), "", sigv4.STREAMING_SIGNED, False)
    key = sigv4.signing_key(user.token, cred)
    seed = sigv4.sign(key, sigv4.strings_to_sign("PUT", path, [], req, headers)[0])
    body, previous = b"", seed
    for chunk in [*chunks, b""]:
        digest = hashlib.sha256(chunk).hexdigest()
        sig = sigv4.sign(key, sigv4.chunk_string_to_sign(req, previous, digest))
        sent = chunk.upper() if forge else chunk
        body += f"{len(chunk):x};chunk-signature={sig}\r\n".encode() + sent + b"\r\n"
        previous = sig
    auth = f"{sigv4.ALGORITHM} Credential={user.email}/{cred.scope},SignedHeaders="
    auth += ";".join(sorted(headers)) + f",Signature={seed}"
    return httpx.put(user.endpoint + path, headers={**headers, "authorization": auth}, content=body)


def test_users_are_isolated(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="secret.txt", Body=b"alice only")
    bob = s3_user(server, "s3bob").client()
    assert "private" not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    for call in (
        lambda: bob.head_bucket(Bucket="private"),
        lambda: bob.list_objects_v2(Bucket="private"),
        lambda: bob.get_object(Bucket="private", Key="secret.txt"),
        lambda: bob.put_object(Bucket="private", Key="x", Body=b"x"),
        lambda: bob.delete_objects(Bucket="private", Delete={"Objects": [{"Key": "secret.txt"}]}),
        lambda: bob.copy_object(Bucket="private", Key="y", CopySource="private/secret.txt"),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert error_code(denied.value) in ("404", "NoSuchBucket")
    # bob's bucket of the same name is his own namespace
    bob.create_bucket(Bucket="private")
    assert bob.list_objects_v2(Bucket="private")["KeyCount"] == 0
    assert s3.get_object(Bucket="private", Key="secret.txt")["Body"].read() == b"alice only"


def test_tasks_and_s3_share_buckets(alice: S3User, s3: Any) -> None:
    """Resources uploaded over S3 are staged into /job; results appear over S3 at once, with
    ETags that follow their content; REST uploads and S3 uploads are one index."""
    s3.create_bucket(Bucket="shared-in")
    blob = os.urandom(9 * MiB)
    s3.upload_fileobj(io.BytesIO(blob), "shared-in", "big.bin")  # multipart
    alice.api.upload("shared-in", "rest.txt", b"via rest")
    listed = {o["Key"]: o["ETag"] for o in s3.list_objects(Bucket="shared-in")["Contents"]}
    assert listed["rest.txt"] == md5_etag(b"via rest")
    uuid = alice.api.submit(
        "md5sum big.bin | cut -d' ' -f1 > sum.txt; echo same > a.txt; echo same > b.txt;"
        " echo other > c.txt",
        advancedResourceBuckets=[{"bucketName": "shared-in"}],
        resultBucket="shared-out",
    )
    assert alice.api.wait(uuid)["state"] == "Success"
    objects = {o["Key"]: o for o in s3.list_objects(Bucket="shared-out")["Contents"]}
    assert sorted(objects) == ["a.txt", "b.txt", "c.txt", "sum.txt"]
    body = s3.get_object(Bucket="shared-out", Key="sum.txt")["Body"].read()
    assert body.decode().strip() == hashlib.md5(blob).hexdigest()
    assert objects["a.txt"]["ETag"] == objects["b.txt"]["ETag"] != objects["c.txt"]["ETag"]
    assert objects["a.txt"]["ETag"].endswith('-1"')  # content hash, never taken for an MD5
    head = s3.head_object(Bucket="shared-out", Key="c.txt")
    assert head["ETag"] == objects["c.txt"]["ETag"] and head["ContentLength"] == 6


def test_bucket_used_by_a_running_task_cannot_be_deleted(alice: S3User, s3: Any) -> None:
    s3.create_bucket(Bucket="busy")
    uuid = alice.api.submit("sleep 60", resultBucket="busy")
    alice.api.wait(uuid, {"FullyExecuting"})
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket="busy")
    assert error_code(busy.value) == "OperationAborted"
    assert uuid in busy.value.response["Error"]["Message"]
    alice.api.ok("POST", f"/tasks/{uuid}/abort")
    alice.api.wait(uuid)
    s3.delete_bucket(Bucket="busy")


def _peak_rss(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_data_persists_across_restarts_and_bodies_stream(fresh_server: ServerProcess) -> None:
    user = s3_user(fresh_server, "persist")
    client = user.client()
    client.create_bucket(Bucket="keep")
    client.put_object(Bucket="keep", Key="small.txt", Body=b"still here")
    uid = client.create_multipart_upload(Bucket="keep", Key="later.bin")["UploadId"]
    part = os.urandom(5 * MiB)
    etag = client.upload_part(
        Bucket="keep", Key="later.bin", UploadId=uid, PartNumber=1, Body=part
    )["ETag"]
    fresh_server.stop()
    fresh_server.start()
    client = user.client()
    assert client.get_object(Bucket="keep", Key="small.txt")["Body"].read() == b"still here"
    client.complete_multipart_upload(
        Bucket="keep",
        Key="later.bin",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert client.get_object(Bucket="keep", Key="later.bin")["Body"].read() == part
    # a 96 MiB single PUT and GET do not hold the object in the server's memory
    assert fresh_server.proc is not None
    pid = fresh_server.proc.pid
    before = _peak_rss(pid)
    rng = random.Random(7)
    size = 96 * MiB
    source = io.BytesIO(rng.randbytes(size))
    client.put_object(Bucket="keep", Key="huge.bin", Body=source)
    stream = client.get_object(Bucket="keep", Key="huge.bin")["Body"]
    digest = hashlib.md5()
    for chunk in iter(lambda: stream.read(MiB), b""):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(source.getvalue()).hexdigest()
    growth = _peak_rss(pid) - before
    assert growth < 40 * MiB, f"server peak memory grew by {growth >> 20} MiB for a 96 MiB object"


def test_rest_settings_advertise_the_endpoint(alice: S3User, server: ServerProcess) -> None:
    settings = alice.api.ok("GET", "/settings")
    assert settings["storage"] == server.url
    # /settings answers JSON even when the token is bad (the SDK calls .json() on it)
    response = httpx.get(server.url + "/v1/settings", headers={"Authorization": "hps_bad"})
    assert response.status_code == 401 and "message" in response.json()
    # trailing slash in cluster_url: /v1//settings works too
    response = httpx.get(server.url + "/v1//settings", headers={"Authorization": alice.token})
    assert response.json()["storage"] == server.url
