"""SigV4 checks, aws-chunked decoding, sealing and listing order: pure functions, checked
against AWS's published examples and against botocore's own signer."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hpcsnap.server.s3 import sigv4
from hpcsnap.server.s3.chunked import AwsChunkedDecoder, ChunkSigner
from hpcsnap.server.s3.errors import S3Error
from hpcsnap.server.s3.listing import successor
from hpcsnap.server.s3.secrets import Sealer, sealer_for

# AWS's documented examples ("Signature Calculations for the Authorization Header" and
# "Transferring Payload in Multiple Chunks"), all signed at 20130524T000000Z.
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CRED = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
AT = dt.datetime(2013, 5, 24, 0, 0, 5, tzinfo=dt.UTC)


def verify(method: str, path: str, query: str, headers: dict[str, str], secret: str) -> bool:
    pairs = sigv4.split_query(query)
    req = sigv4.parse(headers, pairs, now=AT)
    key = sigv4.signing_key(secret, req.credential)
    return sigv4.matches(
        key, sigv4.strings_to_sign(method, path, pairs, req, headers), req.signature
    )


def get_example() -> dict[str, str]:
    return {
        "host": "examplebucket.s3.amazonaws.com",
        "range": "bytes=0-9",
        "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
        "authorization": f"AWS4-HMAC-SHA256 Credential={CRED},"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    }


def test_aws_example_get_object() -> None:
    assert verify("GET", "/test.txt", "", get_example(), SECRET)
    assert not verify("GET", "/test.txt", "", get_example(), SECRET + "x")
    assert not verify("GET", "/test.txt2", "", get_example(), SECRET)
    tampered = {**get_example(), "range": "bytes=0-99"}
    assert not verify("GET", "/test.txt", "", tampered, SECRET)


def test_aws_example_presigned_url() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    headers = {"host": "examplebucket.s3.amazonaws.com"}
    assert verify("GET", "/test.txt", query, headers, SECRET)
    late = AT + dt.timedelta(days=1, seconds=1)
    with pytest.raises(S3Error, match="expired"):
        sigv4.parse(headers, sigv4.split_query(query), now=late)


def streaming_example() -> tuple[dict[str, str], bytes]:
    headers = {
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": sigv4.STREAMING_SIGNED,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "content-length": "66824",
        "authorization": f"AWS4-HMAC-SHA256 Credential={CRED},SignedHeaders=content-encoding;"
        "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        "x-amz-storage-class,"
        "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    }
    body = (
        b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        + b"\r\n"
        + b"a" * 65536
        + b"\r\n400;chunk-signature="
        + b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
        + b"a" * 1024
        + b"\r\n0;chunk-signature="
        + b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
    )
    return headers, body


def decode(body: bytes, signer: ChunkSigner | None, *, trailer: bool, step: int = 777) -> bytes:
    decoder = AwsChunkedDecoder(signer, trailer=trailer)
    out = b"".join(b"".join(decoder.feed(body[i : i + step])) for i in range(0, len(body), step))
    decoder.close()
    return out


def test_aws_example_signed_chunks() -> None:
    headers, body = streaming_example()
    assert verify("PUT", "/examplebucket/chunkObject.txt", "", headers, SECRET)
    req = sigv4.parse(headers, [], now=AT)
    signer = ChunkSigner(sigv4.signing_key(SECRET, req.credential), req)
    for step in (1, 100, 70000):
        assert decode(body, signer, trailer=False, step=step) == b"a" * 66560
    tampered = body.replace(b"a" * 1024, b"b" + b"a" * 1023)
    with pytest.raises(S3Error, match="chunk signature"):
        decode(tampered, signer, trailer=False)
    with pytest.raises(S3Error, match="before its final chunk"):
        decode(body[:-40], signer, trailer=False)


def test_unsigned_chunks_with_trailer() -> None:
    body = b"5\r\nhello\r\n3\r\n!!!\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    decoder = AwsChunkedDecoder(None, trailer=True)
    assert b"".join(decoder.feed(body)) == b"hello!!!"
    assert decoder.close() == {"x-amz-checksum-crc32": "AAAAAA=="}
    with pytest.raises(S3Error, match="after the final chunk"):
        AwsChunkedDecoder(None, trailer=True).feed(body + b"junk")


def test_botocore_signatures_verify_for_awkward_keys_and_queries() -> None:
    """What botocore signs (paths with spaces, +, unicode; repeated and empty query values)
    verifies, including with the email as access key."""
    creds = Credentials("alice@example.org", "hps_secret-token")
    for path, query in [
        ("/bucket/a%20b/c%2Bd~e%21%27%28%29%2A.txt", ""),
        ("/bucket/%C3%A9t%C3%A9/%E6%97%A5.bin", "uploadId=abc&partNumber=3"),
        ("/bucket", "list-type=2&prefix=a%20b%2F&delimiter=%2F&encoding-type=url"),
        ("/bucket", "versions=&prefix="),
        ("/", ""),
    ]:
        request = AWSRequest(
            method="PUT",
            url=f"http://127.0.0.1:9000{path}" + (f"?{query}" if query else ""),
            data=b"payload",
        )
        S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["host"] = "127.0.0.1:9000"
        pairs = sigv4.split_query(query)
        req = sigv4.parse(headers, pairs)
        assert req.credential.access_key == "alice@example.org"
        key = sigv4.signing_key("hps_secret-token", req.credential)
        texts = sigv4.strings_to_sign("PUT", path, pairs, req, headers)
        assert sigv4.matches(key, texts, req.signature), (path, query)
        assert req.payload_hash == hashlib.sha256(b"payload").hexdigest()


def test_malformed_or_stale_requests_are_refused() -> None:
    with pytest.raises(S3Error, match="not signed"):
        sigv4.parse({}, [])
    with pytest.raises(S3Error, match="Signature Version 2"):
        sigv4.parse({}, [("AWSAccessKeyId", "x"), ("Signature", "y")])
    headers = get_example()
    with pytest.raises(S3Error) as stale:
        sigv4.parse(headers, [], now=AT + dt.timedelta(minutes=16))
    assert stale.value.code == "RequestTimeTooSkewed"
    no_hash = {k: v for k, v in headers.items() if k != "x-amz-content-sha256"}
    with pytest.raises(S3Error, match="x-amz-content-sha256"):
        sigv4.parse(no_hash, [], now=AT)
    unsigned_host = {**headers, "authorization": headers["authorization"].replace("host;", "")}
    with pytest.raises(S3Error, match="Host header must be signed"):
        sigv4.parse(unsigned_host, [], now=AT)
    other_service = {**headers, "authorization": headers["authorization"].replace("/s3/", "/ec2/")}
    with pytest.raises(S3Error, match="service 'ec2'"):
        sigv4.parse(other_service, [], now=AT)


def test_sealer_round_trip_and_key_file(tmp_path: Path) -> None:
    sealer = sealer_for(tmp_path)
    sealed = sealer.seal("hps_abc")
    assert "hps_abc" not in sealed
    assert sealer.unseal(sealed) == "hps_abc"
    key_file = tmp_path / "s3-seal.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # another process reading the same key file unseals it; another key does not
    assert Sealer(key_file.read_bytes().strip()).unseal(sealed) == "hps_abc"
    assert sealer_for(tmp_path / "other").unseal(sealed) is None
    assert sealer.unseal("garbage") is None


def test_successor_bounds_every_key_with_the_prefix() -> None:
    assert successor("dir/") == "dir0"
    assert successor("a\U0010ffff") == "b"
    assert successor("\ud7ff"[:0] + "x\ud7ff") == "x\ue000"
    assert successor("") is None
    for key in ("dir/", "dir/a", "dir/\U0010ffff\U0010ffff"):
        assert "dir/" <= key < "dir0"
